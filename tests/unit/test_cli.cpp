// The two command lines, vigild's and vigilctl's: one parser, one wording, help that
// reads the same (issue 9, item 9).
#include "vigil/cli.hpp"
#include "vigil/ctl.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <variant>
#include <vector>

using namespace vigil;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string vigild_error(std::vector<std::string> args) {
    args.insert(args.begin(), "vigild");
    std::vector<const char*> argv;
    for (const auto& a : args)
        argv.push_back(a.c_str());
    auto parsed = parse_flags(static_cast<int>(argv.size()), argv.data());
    const auto* e = std::get_if<FlagsError>(&parsed);
    return e != nullptr ? e->message : "(parsed)";
}

std::string vigilctl_error(const std::vector<std::string>& args) {
    auto parsed = ctl::parse_args(args);
    const auto* e = std::get_if<ctl::UsageError>(&parsed);
    return e != nullptr ? e->message : "(parsed)";
}

// Lines that end in a blank, and Boost's "-h [ --help ]" layout.
void check_tidy(const std::string& help) {
    std::istringstream in(help);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        INFO("line " << n << ": '" << line << "'");
        CHECK((line.empty() || (line.back() != ' ' && line.back() != '\t')));
        CHECK(line.size() <= 80);
        CHECK(line.find("[ --") == std::string::npos);
    }
    CHECK(n > 5);
}

} // namespace

TEST_CASE("cli: vigild and vigilctl word the same mistakes the same way", "[unit][cli]") {
    CHECK(vigild_error({"--bogus"}) == "unknown option '--bogus'");
    CHECK(vigilctl_error({"--bogus", "status"}) == "unknown option '--bogus'");
    CHECK(vigild_error({"--state-dir"}) == "option '--state-dir' needs a value");
    CHECK(vigilctl_error({"--socket"}) == "option '--socket' needs a value");
    CHECK(vigild_error({"stray"}) ==
          "unexpected argument 'stray' (arguments for the child go after --)");
    CHECK(vigilctl_error({"status", "stray"}) == "unexpected argument 'stray'");
    CHECK(vigilctl_error({"status", "-f"}) == "unknown option '-f' for 'status'");
}

TEST_CASE("cli: a repeated option: the last one wins, in both tools", "[unit][cli]") {
    const char* argv[] = {"vigild", "--state-dir", "/a", "--state-dir", "/b"};
    auto parsed = parse_flags(5, argv);
    REQUIRE(std::holds_alternative<Flags>(parsed));
    CHECK(std::get<Flags>(parsed).state_dir == "/b");
    auto ctl = ctl::parse_args({"--socket", "/a", "status", "--socket", "/b"});
    REQUIRE(std::holds_alternative<ctl::Options>(ctl));
    CHECK(std::get<ctl::Options>(ctl).socket == "/b");
}

TEST_CASE("cli: typos get a suggestion", "[unit][cli]") {
    CHECK(vigilctl_error({"stauts"}) == "unknown command 'stauts'; did you mean 'status'?");
    CHECK(vigilctl_error({"oom-scroe", "5"}) ==
          "unknown command 'oom-scroe'; did you mean 'oom-score'?");
    CHECK(vigilctl_error({"stop", "--timout", "5s"}) ==
          "unknown option '--timout' for 'stop'; did you mean '--timeout'?");
    CHECK(vigilctl_error({"--jsno", "status"}) ==
          "unknown option '--jsno'; did you mean '--json'?");
    CHECK(vigild_error({"--state-dri", "/x"}) ==
          "unknown option '--state-dri'; did you mean '--state-dir'?");
    CHECK(vigild_error({"--check-conifg"}) ==
          "unknown option '--check-conifg'; did you mean '--check-config'?");
    // Nothing close: no guess.
    CHECK(vigilctl_error({"frobnicate"}) == "unknown command 'frobnicate'");
    CHECK(vigild_error({"--zzzzzz"}) == "unknown option '--zzzzzz'");
}

TEST_CASE("cli: help is tidy, and vigilctl explains each command", "[unit][cli]") {
    check_tidy(vigild_help());
    check_tidy(ctl::help_text());
    CHECK_THAT(vigild_help(), Contains("-h, --help"));
    CHECK_THAT(vigild_help(), Contains("--state-dir DIR"));
    CHECK_THAT(ctl::help_text(), Contains("-h, --help"));

    // `vigilctl help stop` and `vigilctl stop --help` are the same thing.
    auto parsed = ctl::parse_args({"help", "stop"});
    REQUIRE(std::holds_alternative<ctl::Options>(parsed));
    const auto& o = std::get<ctl::Options>(parsed);
    CHECK(o.command == ctl::Command::help);
    CHECK(o.help_topic == "stop");
    auto flagged = ctl::parse_args({"stop", "--help"});
    REQUIRE(std::holds_alternative<ctl::Options>(flagged));
    CHECK(std::get<ctl::Options>(flagged).help_topic == "stop");
    const auto stop_help = ctl::help_text("stop");
    check_tidy(stop_help);
    CHECK_THAT(stop_help,
               StartsWith("Usage: vigilctl stop [--timeout D] [--for D] [--reason TEXT]"));
    CHECK_THAT(stop_help, Contains("--for D"));
    CHECK_THAT(stop_help, Contains("--reason TEXT"));
    for (const char* cmd :
         {"status", "start", "stop", "restart", "kill", "oom-score", "events", "logs", "reload",
          "config", "metrics", "incidents", "shutdown", "health", "help"}) {
        INFO(cmd);
        const auto h = ctl::help_text(cmd);
        CHECK_THAT(h, StartsWith(std::string("Usage: vigilctl ") + cmd));
        check_tidy(h);
    }
    CHECK(vigilctl_error({"help", "stauts"}) == "unknown command 'stauts'; did you mean 'status'?");
}

TEST_CASE("cli: vigilctl config is a command", "[unit][cli]") {
    auto parsed = ctl::parse_args({"config"});
    REQUIRE(std::holds_alternative<ctl::Options>(parsed));
    CHECK(std::get<ctl::Options>(parsed).command == ctl::Command::config);
    CHECK(vigilctl_error({"config", "x"}) == "unexpected argument 'x'");
}
