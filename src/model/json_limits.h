#pragma once
// How deep JSON may nest anywhere in Fairway, defined once. Ingest refuses a message nested
// deeper (400 naming the field), and every later parse of a stored activity, a campaign
// definition or a request body uses the same limit, so a message that was accepted is never
// cut short or silently emptied downstream.
//
// Depth counts objects and arrays as Boost.JSON does: `{}` is 1, `{"a":{"b":[1]}}` is 3. A
// message counts from its own object, also inside a batch.

#include <boost/json/parse_options.hpp>
#include <cstddef>

namespace fairway::model {

// Boost.JSON's own default, so that parsers left at their default agree as well.
inline constexpr std::size_t kMaxJsonDepth = 32;

// Parse options for boost::json::parse with the limit above.
inline boost::json::parse_options JsonParseOptions() {
  boost::json::parse_options o;
  o.max_depth = kMaxJsonDepth;
  return o;
}

}  // namespace fairway::model
