// A value handed to another thread by a library ThreadSanitizer cannot see into.
//
// Debian's gRPC is not instrumented: when it copies a callback on the calling thread and
// runs it on one of its own, TSan sees the copy and the run but not the hand-off between
// them, and reports the callback's reads of its captures as a race. Wrapping the captures
// in a TsanHandoff tells TSan about the hand-off: every construction (the copy gRPC makes
// included) ends in a release, and take() on the receiving thread acquires before the
// value is read. Without -fsanitize=thread both are no-ops.
#pragma once

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#include <utility>

namespace vigil {

template <class T> class TsanHandoff {
public:
    explicit TsanHandoff(T value) : value_(std::move(value)) { release(); }
    TsanHandoff(const TsanHandoff& other) : value_(other.value_) { release(); }
    TsanHandoff(TsanHandoff&& other) noexcept : value_(std::move(other.value_)) { release(); }
    TsanHandoff& operator=(const TsanHandoff&) = delete;
    TsanHandoff& operator=(TsanHandoff&&) = delete;

    // On the receiving thread, before anything of the value is read.
    T& take() {
#if defined(__SANITIZE_THREAD__)
        __tsan_acquire(this);
#endif
        return value_;
    }

private:
    void release() {
#if defined(__SANITIZE_THREAD__)
        __tsan_release(this);
#endif
    }

    T value_;
};

} // namespace vigil
