// What vigild inherits from whoever started it and must not keep.
#pragma once

namespace vigil {

// Clears the signal mask and resets every signal's disposition to the default. A parent
// that blocked or ignored SIGCHLD (a shell script's trap, a supervisor of its own) would
// otherwise blind vigild to its child's death: a blocked SIGCHLD never arrives, an ignored
// one makes the kernel reap the child before waitpid can see its status. Call first thing
// in main(), before any thread exists (threads inherit the mask).
void reset_inherited_signals();

} // namespace vigil
