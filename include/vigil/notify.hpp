// sd_notify: telling systemd (Type=notify) what vigild is doing.
//
// Uses libsystemd's sd_notify, which speaks the documented datagram protocol to
// $NOTIFY_SOCKET (a path or an abstract "@name" socket). Without NOTIFY_SOCKET every call
// is a no-op, so vigild runs the same by hand and under systemd.
#pragma once

#include "vigil/config.hpp"

#include <optional>
#include <string>

namespace vigil {

class Notifier {
public:
    // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once.
    Notifier();

    bool enabled() const { return enabled_; }
    // Half of WATCHDOG_USEC (when the watchdog is meant for this process), else nullopt.
    std::optional<Duration> watchdog_interval() const { return watchdog_interval_; }

    void ready(const std::string& status);
    void status(const std::string& status);
    void watchdog();
    void reloading();
    void stopping();

    // Sends a raw message ("READY=1\nSTATUS=..."); returns false if sending failed.
    bool send(const std::string& message);

private:
    bool enabled_ = false;
    std::optional<Duration> watchdog_interval_;
};

} // namespace vigil
