// Error values that cross function boundaries inside the daemon.
//
// No exception may escape an asio handler or a gRPC callback, so code that runs in the loop
// returns Result<T>: either a value or an Error that carries the OS error code and a
// sentence of context ("failed to open /run/vigil/vigild.pid").
#pragma once

#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace vigil {

struct Error {
    std::error_code code;
    std::string context;

    // "context: strerror" (or just the context when there is no code).
    std::string message() const {
        if (!code)
            return context;
        return context + ": " + code.message();
    }
};

inline Error make_error(int errno_value, std::string context) {
    return Error{std::error_code(errno_value, std::generic_category()), std::move(context)};
}

inline Error make_error(std::string context) {
    return Error{{}, std::move(context)};
}

template <typename T> class Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() {
    return Unit{};
}

} // namespace vigil
