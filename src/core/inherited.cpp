#include "vigil/inherited.hpp"

#include <csignal>

namespace vigil {

void reset_inherited_signals() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        ::sigaction(sig, &dfl, nullptr); // EINVAL for the few reserved numbers: harmless
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

} // namespace vigil
