#include "vigil/notify.hpp"

#include "vigil/log.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fmt/format.h>

namespace vigil {

Notifier::Notifier() {
    const char* sock = std::getenv("NOTIFY_SOCKET");
    enabled_ = sock != nullptr && *sock != '\0';
    std::uint64_t usec = 0;
    // sd_watchdog_enabled checks WATCHDOG_PID against our pid; 0 keeps the variables.
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        watchdog_interval_ =
            std::chrono::duration_cast<Duration>(std::chrono::microseconds(usec / 2));
}

bool Notifier::send(const std::string& message) {
    if (!enabled_)
        return true;
    int r = sd_notify(0, message.c_str());
    if (r < 0) {
        log::warn("sd_notify failed: {}", strerror(-r));
        return false;
    }
    return true;
}

void Notifier::ready(const std::string& status) {
    send("READY=1\nSTATUS=" + status);
}
void Notifier::status(const std::string& status) {
    send("STATUS=" + status);
}
void Notifier::watchdog() {
    send("WATCHDOG=1");
}

void Notifier::reloading() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const unsigned long long usec =
        static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + ts.tv_nsec / 1000;
    send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec));
}

void Notifier::stopping() {
    send("STOPPING=1");
}

} // namespace vigil
