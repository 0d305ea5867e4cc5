// The text form of vigild's small records (child.state, child.next, child.hold): one
// "key=value" per line.
#pragma once

#include "vigil/result.hpp"

#include <initializer_list>
#include <map>
#include <string>

namespace vigil {

// Parses `text` into key -> value. Every key must be one of `keys`, given exactly once;
// values may not be empty unless their key is in `may_be_empty`. Errors say what is
// wrong ("line 3: unknown key 'x'", "incomplete record (missing pid, exe)").
Result<std::map<std::string, std::string>>
parse_record_lines(const std::string& text, std::initializer_list<const char*> keys,
                   std::initializer_list<const char*> may_be_empty = {});

} // namespace vigil
