#pragma once
// Key-range helpers for modules that lay out their own keys in a Store. Pure functions:
// thread-safe.

#include <string>

namespace fairway::storage {

// The smallest key greater than every key that starts with `prefix`: the exclusive upper bound
// of the prefix's range for Store::NewIterator and WriteBatch::DeleteRange. Trailing 0xff bytes
// are dropped and the last remaining byte is incremented ("ab\xff" -> "ac"). Returns "" when no
// such key exists (`prefix` empty or all 0xff bytes); Store::NewIterator reads an empty upper
// bound as "no bound", which is the right range for such a prefix.
std::string PrefixEnd(std::string prefix);

}  // namespace fairway::storage
