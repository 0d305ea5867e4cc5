// The one way vigil includes boost.asio.
//
// GCC 12 + Boost 1.74 under C++20: <boost/asio.hpp> fails to compile unless <utility> has
// been included first, so every file includes asio through this header.
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace vigil {
namespace asio = boost::asio;
} // namespace vigil
