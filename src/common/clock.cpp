#include "common/clock.h"

namespace fairway {

SystemClock* SystemClock::Default() {
  static SystemClock clock;
  return &clock;
}

}  // namespace fairway
