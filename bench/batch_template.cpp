#include "batch_template.h"

#include <array>
#include <cassert>
#include <cstring>

namespace fairway::bench {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Product pages, referrers and plans the generated events are drawn from.
constexpr std::array<std::string_view, 8> kProducts = {
    "trail-running-shoe-x2",  "merino-wool-beanie", "ultralight-tent-2p", "carbon-trekking-poles",
    "insulated-water-bottle", "down-jacket-hooded", "headlamp-400-lumen", "rain-shell-pants"};
constexpr std::array<std::string_view, 8> kTitles = {
    "Trail Running Shoe X2",  "Merino Wool Beanie", "Ultralight Tent 2P", "Carbon Trekking Poles",
    "Insulated Water Bottle", "Hooded Down Jacket", "Headlamp 400 Lumen", "Rain Shell Pants"};
constexpr std::array<std::string_view, 5> kReferrers = {
    "https://www.google.com/search?q=outdoor+gear", "https://news.ycombinator.com/",
    "https://www.bing.com/search?q=hiking", "https://t.co/x7Qz81", "https://mail.example.net/"};
constexpr std::array<std::string_view, 3> kPlans = {"free", "pro", "enterprise"};
constexpr std::array<std::string_view, 6> kValues = {"19.99", "42.50",  "129.00",
                                                     "7.25",  "310.40", "64.90"};

// Appends `s` escaped for the COPY text format (backslash, tab, newline, carriage return).
void AppendCopyEscaped(std::string* out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        out->push_back(c);
    }
  }
}

}  // namespace

void WriteFixedDecimal(char* out, size_t width, uint64_t value) {
  for (size_t i = width; i > 0; --i) {
    out[i - 1] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

void WriteFixedHex(char* out, size_t width, uint64_t value) {
  for (size_t i = width; i > 0; --i) {
    out[i - 1] = kHexDigits[value & 0xf];
    value >>= 4;
  }
}

uint32_t EventVariant(uint16_t stream, uint32_t event) {
  constexpr uint32_t kVariants = 29;  // prime, so variants spread over the property lists
  return (stream * 7u + event) % kVariants;
}

size_t FieldWidth(Field field, size_t tenant_width) {
  switch (field) {
    case Field::kTenant:
      return tenant_width;
    case Field::kUserId:
      return kUserIdWidth;
    case Field::kMessageId:
      return kMessageIdWidth;
    case Field::kTimestamp:
      return kTimestampWidth;
  }
  return 0;
}

FieldSource::FieldSource(uint32_t run_id, uint16_t stream, uint32_t users, uint64_t seed)
    : rng_state_(seed), users_(users == 0 ? 1 : users) {
  WriteFixedHex(message_prefix_, 8, run_id);
  message_prefix_[8] = '-';
  WriteFixedHex(message_prefix_ + 9, 4, stream);
  message_prefix_[13] = '-';
}

uint64_t FieldSource::NextRandom() {
  // splitmix64: tiny state, good enough spread for picking users.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void FieldSource::NextUserId(char* out) {
  uint64_t user = NextRandom() % users_;  // modulo bias is negligible for 64-bit draws
  out[0] = 'u';
  WriteFixedDecimal(out + 1, kUserIdWidth - 1, user);
}

void FieldSource::NextMessageId(char* out) {
  std::memcpy(out, message_prefix_, sizeof message_prefix_);
  WriteFixedHex(out + sizeof message_prefix_, kMessageIdWidth - sizeof message_prefix_,
                sequence_++);
}

void BatchTemplate::Append(std::string_view literal) {
  if (copy_escaping_) {
    AppendCopyEscaped(&bytes_, literal);
  } else {
    bytes_.append(literal);
  }
}

void BatchTemplate::AppendSlot(Field field, uint32_t event) {
  assert(slots_.empty() || slots_.back().event <= event);
  slots_.push_back(Slot{static_cast<uint32_t>(bytes_.size()), event, field});
  // Placeholder characters need no escaping in any of the formats.
  bytes_.append(FieldWidth(field, tenant_width_), 'x');
}

void BatchTemplate::Fill(std::string_view tenant, std::string_view timestamp, FieldSource& source) {
  assert(tenant.size() == tenant_width_ || tenant.empty());
  assert(timestamp.size() == kTimestampWidth);
  char user_id[kUserIdWidth];
  char message_id[kMessageIdWidth];
  uint32_t current_event = UINT32_MAX;
  char* base = bytes_.data();
  for (const Slot& slot : slots_) {
    if (slot.event != current_event) {
      current_event = slot.event;
      source.NextUserId(user_id);
      source.NextMessageId(message_id);
    }
    char* at = base + slot.offset;
    switch (slot.field) {
      case Field::kTenant:
        std::memcpy(at, tenant.data(), tenant_width_);
        break;
      case Field::kUserId:
        std::memcpy(at, user_id, kUserIdWidth);
        break;
      case Field::kMessageId:
        std::memcpy(at, message_id, kMessageIdWidth);
        break;
      case Field::kTimestamp:
        std::memcpy(at, timestamp.data(), kTimestampWidth);
        break;
    }
  }
}

EventShape::EventShape(uint32_t variant) {
  auto literal = [this](std::string_view s) {
    if (!pieces_.empty() && !pieces_.back().is_slot) {
      pieces_.back().literal.append(s);
    } else {
      pieces_.push_back(Piece{std::string(s)});
    }
  };
  auto slot = [this](Field field) { pieces_.push_back(Piece{{}, field, true}); };

  std::string_view product = kProducts[variant % kProducts.size()];
  std::string_view title = kTitles[variant % kTitles.size()];
  std::string_view referrer = kReferrers[(variant / 2) % kReferrers.size()];
  std::string_view plan = kPlans[(variant / 3) % kPlans.size()];
  std::string_view value = kValues[(variant / 5) % kValues.size()];

  literal(R"({"type":"track","event":"Page Viewed","userId":")");
  slot(Field::kUserId);
  literal(R"(","messageId":")");
  slot(Field::kMessageId);
  literal(R"(","timestamp":")");
  slot(Field::kTimestamp);
  literal(R"(","properties":{"url":"https://shop.example.com/products/)");
  literal(product);
  literal(R"(","path":"/products/)");
  literal(product);
  literal(R"(","referrer":")");
  literal(referrer);
  literal(R"(","title":")");
  literal(title);
  literal(R"( | Example Shop","plan":")");
  literal(plan);
  literal(R"(","value":)");
  literal(value);
  literal(R"(,"currency":"USD"}})");
}

size_t EventShape::json_size() const {
  size_t size = 0;
  for (const Piece& piece : pieces_) {
    size += piece.is_slot ? FieldWidth(piece.field, 0) : piece.literal.size();
  }
  return size;
}

void EventShape::AppendTo(BatchTemplate* out, uint32_t event) const {
  for (const Piece& piece : pieces_) {
    if (piece.is_slot) {
      out->AppendSlot(piece.field, event);
    } else {
      out->Append(piece.literal);
    }
  }
}

}  // namespace fairway::bench
