// Operator intent that outlives vigild: a child stopped with `vigilctl stop` stays stopped
// across vigild crashes, SIGKILLs, watchdog aborts and SIGUSR2 upgrades, until `vigilctl
// start`, until the hold's `for` runs out, or until vigild is stopped cleanly. The hold is
// a record in the state dir (state_dir/child.hold), read with the same trust rules as the
// child's records.
#pragma once

#include "vigil/result.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace vigil {

inline constexpr const char* kHoldName = "child.hold";
inline constexpr size_t kMaxHoldReasonBytes = 1024;

struct OperatorHold {
    using Time = std::chrono::system_clock::time_point;
    Time since;
    std::optional<Time> until; // nullopt: until `vigilctl start` or a clean vigild stop
    std::string reason;        // one line; "" = none given

    bool operator==(const OperatorHold&) const = default;
    // "held by the operator since ... (reason) until ..."
    std::string describe() const;
};

std::string format_hold(const OperatorHold& h);
Result<OperatorHold> parse_hold(const std::string& text);

Status write_hold(const std::string& state_dir, const OperatorHold& h);
void remove_hold(const std::string& state_dir);
// The hold, if a trusted record holds one; an untrusted or garbled record is ignored with
// a warning (and so is a hold vigild could not have written).
std::optional<OperatorHold> read_hold(const std::string& state_dir);

} // namespace vigil
