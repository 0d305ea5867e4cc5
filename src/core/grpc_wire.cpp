#include "vigil/grpc_wire.hpp"

#include <fmt/format.h>

#include <charconv>

namespace vigil {
namespace {

// A response larger than this is not a HealthCheckResponse (it is 2-3 bytes).
constexpr std::size_t kMaxResponseMessage = 4096;

std::optional<std::uint16_t> port_of(std::string_view s) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v == 0 || v > 65535)
        return std::nullopt;
    return static_cast<std::uint16_t>(v);
}

// "HOST", "HOST:PORT", "[V6]", "[V6]:PORT" into host and port (443 when absent).
Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view s) {
    std::string_view host = s, port;
    if (s.starts_with("[")) {
        const size_t close = s.find(']');
        if (close == std::string_view::npos)
            return make_error(fmt::format("'{}': an IPv6 address in [ ] lacks its ']'", s));
        host = s.substr(1, close - 1);
        auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':')
                return make_error(fmt::format("'{}': expected :PORT after ']'", s));
            port = rest.substr(1);
        }
    } else if (const size_t colon = s.rfind(':'); colon != std::string_view::npos) {
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    if (host.empty())
        return make_error(fmt::format("'{}': no host", s));
    std::uint16_t p = 443;
    if (!port.empty()) {
        auto v = port_of(port);
        if (!v)
            return make_error(fmt::format("'{}': '{}' is not a port 1..65535", s, port));
        p = *v;
    }
    return std::pair{std::string(host), p};
}

std::string authority_of(const std::string& host, std::uint16_t port) {
    if (host.find(':') != std::string::npos)
        return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (in.empty())
            return false;
        const auto b = static_cast<unsigned char>(in.front());
        in.remove_prefix(1);
        v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

} // namespace

Result<GrpcTarget> parse_grpc_target(std::string_view target) {
    GrpcTarget t;
    if (target.starts_with("unix:")) {
        auto path = target.substr(5);
        if (path.starts_with("//"))
            path.remove_prefix(2);
        if (!path.starts_with("/"))
            return make_error(fmt::format("'{}': a unix socket needs an absolute path", target));
        t.kind = GrpcTarget::Kind::unix_path;
        t.path = std::string(path);
        t.authority = "localhost";
        return t;
    }
    if (target.starts_with("unix-abstract:")) {
        t.kind = GrpcTarget::Kind::unix_abstract;
        t.path = std::string(target.substr(14));
        t.authority = "localhost";
        return t;
    }
    if (target.starts_with("ipv4:") || target.starts_with("ipv6:")) {
        const bool v4 = target[3] == '4';
        auto list = target.substr(5);
        t.kind = GrpcTarget::Kind::addresses;
        while (!list.empty()) {
            const size_t comma = list.find(',');
            const auto item = list.substr(0, comma);
            std::string addr(item);
            std::uint16_t port = 443;
            if (v4 || item.starts_with("[")) {
                auto hp = split_host_port(item);
                if (!hp)
                    return hp.error();
                addr = hp->first;
                port = hp->second;
            }
            boost::system::error_code ec;
            const auto a = asio::ip::make_address(addr, ec);
            if (ec || a.is_v4() != v4)
                return make_error(
                    fmt::format("'{}': '{}' is not an IPv{} address", target, addr, v4 ? 4 : 6));
            t.endpoints.emplace_back(a, port);
            if (t.authority.empty())
                t.authority = authority_of(addr, port);
            if (comma == std::string_view::npos)
                break;
            list.remove_prefix(comma + 1);
        }
        if (t.endpoints.empty())
            return make_error(fmt::format("'{}': no address given", target));
        return t;
    }
    auto rest = target;
    if (rest.starts_with("dns:")) {
        rest.remove_prefix(4);
        // dns://AUTHORITY/HOST: gRPC would ask that DNS server; the system resolver is asked.
        if (rest.starts_with("//")) {
            const size_t slash = rest.find('/', 2);
            if (slash == std::string_view::npos)
                return make_error(fmt::format("'{}': dns://AUTHORITY lacks /HOST", target));
            rest.remove_prefix(slash + 1);
        }
    }
    auto hp = split_host_port(rest);
    if (!hp)
        return hp.error();
    t.kind = GrpcTarget::Kind::name;
    t.host = hp->first;
    t.port = hp->second;
    t.authority = authority_of(t.host, t.port);
    return t;
}

std::string encode_health_request(std::string_view service) {
    std::string msg;
    if (!service.empty()) {
        msg.push_back(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(msg, service.size());
        msg.append(service);
    }
    std::string out(5, '\0');
    const auto n = static_cast<std::uint32_t>(msg.size());
    out[1] = static_cast<char>(n >> 24);
    out[2] = static_cast<char>(n >> 16);
    out[3] = static_cast<char>(n >> 8);
    out[4] = static_cast<char>(n);
    return out + msg;
}

Result<std::uint64_t> decode_health_response(std::string_view body) {
    if (body.size() < 5)
        return make_error(
            fmt::format("an answer of {} bytes, shorter than gRPC's 5-byte prefix", body.size()));
    if (body[0] != 0)
        return make_error("a compressed answer (vigild asks for none)");
    const std::uint32_t n =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(body[1])) << 24) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(body[2])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(body[3])) << 8) |
        static_cast<std::uint32_t>(static_cast<unsigned char>(body[4]));
    if (n > kMaxResponseMessage || n != body.size() - 5)
        return make_error(
            fmt::format("the answer's prefix says {} bytes, {} came", n, body.size() - 5));
    std::string_view msg = body.substr(5);
    std::uint64_t status = 0; // absent: proto3's default, UNKNOWN
    while (!msg.empty()) {
        std::uint64_t key = 0;
        if (!get_varint(msg, key))
            return make_error("a malformed HealthCheckResponse");
        const auto field = key >> 3;
        std::uint64_t v = 0;
        switch (key & 7) {
        case 0: // varint
            if (!get_varint(msg, v))
                return make_error("a malformed HealthCheckResponse");
            if (field == 1)
                status = v;
            break;
        case 1: // fixed64
            if (msg.size() < 8)
                return make_error("a malformed HealthCheckResponse");
            msg.remove_prefix(8);
            break;
        case 2: // length-delimited
            if (!get_varint(msg, v) || v > msg.size())
                return make_error("a malformed HealthCheckResponse");
            msg.remove_prefix(v);
            break;
        case 5: // fixed32
            if (msg.size() < 4)
                return make_error("a malformed HealthCheckResponse");
            msg.remove_prefix(4);
            break;
        default:
            return make_error("a malformed HealthCheckResponse");
        }
    }
    return status;
}

std::string grpc_timeout_value(Duration timeout) {
    const auto ms = std::max<std::int64_t>(timeout.count(), 1);
    if (ms <= 99'999'999)
        return fmt::format("{}m", ms);
    return fmt::format("{}S", std::min<std::int64_t>(ms / 1000, 99'999'999));
}

std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        unsigned v = 0;
        if (s[i] == '%' && i + 2 < s.size()) {
            auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
            if (ec == std::errc() && end == s.data() + i + 3) {
                out.push_back(static_cast<char>(v));
                i += 2;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

} // namespace vigil
