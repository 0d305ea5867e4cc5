// Incident reports: when vigild kills a hung child or the child dies unexpectedly, one
// report with what there is to know, written before the evidence is gone (DESIGN.md
// "[incidents]"). systemd keeps a core dump for a crash but nothing for a hang.
#pragma once

#include "vigil/config.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/restart_policy.hpp"
#include "vigil/result.hpp"

#include <deque>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

// One health check as the report shows it.
struct ProbeRecord {
    SystemTime at;
    std::string result; // "SERVING", "deadline exceeded (3s)", ...
    Duration latency{};
};

// What /proc says about a live (hung) child: read at the kill decision, bounded.
struct ProcEvidence {
    std::string status, wchan, stack, limits; // "(unreadable: ...)" when not readable
    int fd_count = -1;                        // -1: unknown
};
ProcEvidence collect_proc_evidence(pid_t pid);

struct Incident {
    std::string id; // "20261130T201500Z-4242": time and pid, sortable
    SystemTime at;
    pid_t pid = 0;
    std::string kind;                 // "hang" (vigild killed it) | "death" (it died by itself)
    std::string reason;               // the kill reason, or the exit
    std::vector<ProbeRecord> probes;  // the last checks, oldest first
    std::optional<ProcEvidence> proc; // hang: the child's /proc before the kill
    std::vector<std::string> output;  // captured lines (dump_wait, or the last ones)
    std::string output_note;          // where the output came from, or why none
    std::optional<ExitStatus> exit;   // once known
};

// "20261130T201500Z-4242": when (UTC) and the child's pid; sorts by time.
std::string incident_id(SystemTime at, pid_t pid);

// The report as text, at most `cap` bytes (the output is cut first, then /proc).
std::string render_incident(const Incident& incident, std::size_t cap);

// The reports in [incidents] dir: the newest `keep`, each written atomically.
class IncidentStore {
public:
    static constexpr std::size_t kReportCap = 256 * 1024;

    struct Summary {
        std::string id;
        std::string kind;
        std::string reason;
    };

    // Off with an empty dir. The reports already in `dir` are taken when first needed
    // (their names and heads, bounded by keep), not here: nothing is read before the spawn.
    void configure(const std::string& dir, unsigned keep);
    bool enabled() const { return !dir_.empty(); }
    // Writes the report and forgets the oldest past `keep`; its id.
    Result<std::string> write(const Incident& incident);
    // Newest first.
    const std::deque<Summary>& list() const;
    // One report's text; ENOENT for an id it does not hold.
    Result<std::string> read(const std::string& id) const;

private:
    std::string dir_;
    unsigned keep_ = 0;
    void load() const;
    mutable bool loaded_ = false;
    mutable std::deque<Summary> index_; // newest first
};

} // namespace vigil
