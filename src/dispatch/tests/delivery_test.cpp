#include "dispatch/delivery.h"

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "dispatch/mail_message.h"
#include "storage/keys.h"

namespace fairway::dispatch {
namespace {

Delivery Webhook() {
  Delivery d;
  d.kind = DeliveryKind::kWebhook;
  d.id = "welcome.r7f3a.2";
  d.purpose = "webhook";
  d.source = "welcome";
  d.created_ms = 1'700'000'000'123;
  d.method = "POST";
  d.url = "https://hooks.example.com/in?x=1";
  d.headers = {{"Content-Type", "application/json"}, {"X-Empty", ""}};
  d.body = R"({"lead":"u1"})";
  return d;
}

Delivery Email() {
  Delivery d;
  d.kind = DeliveryKind::kEmail;
  d.id = "welcome.mail.1";
  d.purpose = "email";
  d.created_ms = 1'700'000'000'000;
  d.mail_from = "news@fairway.example";
  d.mail_to = "ada@example.org";
  d.subject = "Hello";
  d.text_body = "Hi Ada";
  return d;
}

TEST(DeliveryCodecTest, RoundTripsEveryField) {
  Delivery d = Webhook();
  d.attempts = 3;
  d.next_attempt_ms = 1'700'000'060'000;
  d.last_attempt_ms = 1'700'000'050'000;
  d.last_error = "HTTP 503";
  d.dead_at_ms = 7;
  d.mail_from = "a@b.c";
  d.text_body = std::string("binary\0body", 11);
  auto back = DecodeDelivery(EncodeDelivery(d));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, d);
  auto next = PeekNextAttempt(EncodeDelivery(d));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, d.next_attempt_ms);
  Delivery e = Email();
  auto eback = DecodeDelivery(EncodeDelivery(e));
  ASSERT_TRUE(eback.ok());
  EXPECT_EQ(*eback, e);
}

TEST(DeliveryCodecTest, CorruptInputIsInvalidArgumentNamingDelivery) {
  std::string enc = EncodeDelivery(Webhook());
  for (size_t cut : {size_t{0}, size_t{1}, size_t{5}, enc.size() / 2, enc.size() - 1}) {
    auto r = DecodeDelivery(std::string_view(enc).substr(0, cut));
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("delivery"), std::string::npos);
  }
  EXPECT_FALSE(DecodeDelivery(enc + "x").ok());  // trailing bytes
  std::string bad_version = enc;
  bad_version[0] = 9;
  EXPECT_FALSE(DecodeDelivery(bad_version).ok());
  EXPECT_FALSE(PeekNextAttempt(bad_version).ok());
  EXPECT_FALSE(PeekNextAttempt("").ok());
}

TEST(DeliveryKeysTest, PendingKeysSortByCreationTimeWithinTheTenant) {
  TenantId acme("acme"), acme2("acme2");
  EXPECT_LT(PendingKey(acme, 255, "z"), PendingKey(acme, 256, "a"));
  EXPECT_LT(PendingKey(acme, 1, "a"), PendingKey(acme, 1, "b"));
  EXPECT_TRUE(PendingKey(acme, 5, "x").starts_with(PendingPrefix(acme)));
  EXPECT_TRUE(DeadKey(acme, "x").starts_with(DeadPrefix(acme)));
  // A tenant whose id extends another's never shares its range.
  EXPECT_FALSE(PendingKey(acme2, 5, "x").starts_with(TenantPrefix(acme)));
  EXPECT_LT(PendingKey(acme, INT64_MAX, "zzz"), storage::PrefixEnd(PendingPrefix(acme)));
  EXPECT_LT(DeadKey(acme, "\xff\xff"), storage::PrefixEnd(TenantPrefix(acme)));
}

TEST(DeliveryKeysTest, WebhookOriginNormalisesSchemeHostAndPort) {
  EXPECT_EQ(*WebhookOrigin("https://API.Example.com/x"), "https://api.example.com:443");
  EXPECT_EQ(*WebhookOrigin("http://127.0.0.1:8080/hook?a=b"), "http://127.0.0.1:8080");
  EXPECT_EQ(*WebhookOrigin("HTTP://h"), "http://h:80");
  EXPECT_FALSE(WebhookOrigin("ftp://h/x").ok());
}

// Expects ValidateDelivery(d) to be InvalidArgument with a message containing `field`.
void ExpectRejected(const Delivery& d, const std::string& field) {
  Status st = ValidateDelivery(d);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << field;
  EXPECT_NE(st.message().find(field), std::string::npos) << st.message();
}

TEST(ValidateDeliveryTest, AcceptsWellFormedDeliveries) {
  EXPECT_TRUE(ValidateDelivery(Webhook()).ok()) << ValidateDelivery(Webhook()).ToString();
  EXPECT_TRUE(ValidateDelivery(Email()).ok()) << ValidateDelivery(Email()).ToString();
  Delivery d = Email();
  d.subject = "Grüße ✓";
  d.text_body = "multi\nline\r\nbody";
  EXPECT_TRUE(ValidateDelivery(d).ok());
}

TEST(ValidateDeliveryTest, RejectsHeaderInjection) {
  Delivery d = Webhook();
  d.headers = {{"X-A", "ok\r\nX-Injected: 1"}};
  ExpectRejected(d, "header X-A");
  d.headers = {{"X-A", "ok\nmore"}};
  ExpectRejected(d, "header X-A");
  d.headers = {{"X-A\r\nX-B", "v"}};
  ExpectRejected(d, "header name");
  d.headers = {{"Bad Name", "v"}};
  ExpectRejected(d, "header name");
  d.headers = {{"", "v"}};
  ExpectRejected(d, "header name");
  d.headers = {{"idempotency-key", "forged"}};
  ExpectRejected(d, "header name");
  d.headers = {{"X-Fairway-Signature", "forged"}};
  ExpectRejected(d, "header name");

  Delivery e = Email();
  e.mail_to = "ada@example.org\r\nBcc: all@example.org";
  ExpectRejected(e, "mail_to");
  e = Email();
  e.mail_from = "news@fairway.example\nBcc: x@y.z";
  ExpectRejected(e, "mail_from");
  e = Email();
  e.subject = "Hi\r\nBcc: all@example.org";
  ExpectRejected(e, "subject");
  e = Email();
  e.subject = "Hi\nthere";
  ExpectRejected(e, "subject");
}

TEST(ValidateDeliveryTest, RejectsBadUrlsMethodsAndAddresses) {
  Delivery d = Webhook();
  for (const char* url :
       {"", "not a url", "hooks.example.com/x", "ftp://example.com/x", "file:///etc/passwd",
        "http://", "http://exa mple.com/", "http://example.com/\r\nX: y", "javascript:alert(1)"}) {
    d.url = url;
    ExpectRejected(d, "url");
  }
  d = Webhook();
  d.method = "post";
  ExpectRejected(d, "method");
  d.method = "CONNECT";
  ExpectRejected(d, "method");
  d = Webhook();
  d.body = std::string(kMaxBodyBytes + 1, 'x');
  ExpectRejected(d, "body");

  Delivery e = Email();
  for (const char* to : {"", "ada", "@example.org", "ada@", "ada@@example.org", "a da@example.org",
                         "<ada@example.org>", "ada@example..org", "Ada <ada@example.org>"}) {
    e.mail_to = to;
    ExpectRejected(e, "mail_to");
  }

  Delivery i = Webhook();
  i.id = "";
  ExpectRejected(i, "id");
  i.id = "has space";
  ExpectRejected(i, "id");
  i.id = std::string(kMaxDeliveryIdBytes + 1, 'a');
  ExpectRejected(i, "id");
  i = Webhook();
  i.purpose = "bad\npurpose";
  ExpectRejected(i, "purpose");
  i = Webhook();
  i.created_ms = -1;
  ExpectRejected(i, "created_ms");
}

// --- mail_message ---

// Decodes quoted-printable (soft breaks removed), for checking the encoder.
std::string DecodeQuotedPrintable(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out.push_back(in[i]);
    } else if (in.substr(i + 1, 2) == "\r\n") {
      i += 2;
    } else {
      out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    }
  }
  return out;
}

std::vector<std::string_view> Lines(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find("\r\n", pos);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

TEST(MailMessageTest, MessageIdIsStableDistinctAndValid) {
  EXPECT_EQ(MessageIdFor("welcome.r7f3a.2"), "<welcome.r7f3a.2@fairway>");
  EXPECT_EQ(MessageIdFor("welcome.r7f3a.2"), MessageIdFor("welcome.r7f3a.2"));
  EXPECT_EQ(MessageIdFor("a<b>@c"), "<a=3Cb=3E=40c@fairway>");
  EXPECT_EQ(MessageIdFor(".a..b."), "<=2Ea.=2Eb=2E@fairway>");
  // `=` is escaped too, so an escaped id never collides with a literal one.
  EXPECT_NE(MessageIdFor("a=3Cb"), MessageIdFor("a<b"));
}

TEST(MailMessageTest, SubjectIsEncodedOnlyWhenNeededAndSplitOnCharacters) {
  EXPECT_EQ(EncodeHeaderText("Welcome aboard"), "Welcome aboard");
  EXPECT_EQ(EncodeHeaderText("=?looks encoded?="), "=?UTF-8?B?PT9sb29rcyBlbmNvZGVkPz0=?=");
  std::string subject;
  for (int i = 0; i < 30; ++i) subject += "Grüße ✓ ";
  std::string enc = EncodeHeaderText(subject);
  std::string decoded;
  size_t words = 0;
  for (std::string_view line : Lines(enc)) {
    if (line.starts_with(" ")) line.remove_prefix(1);  // folding
    ASSERT_TRUE(line.starts_with("=?UTF-8?B?") && line.ends_with("?=")) << line;
    EXPECT_LE(line.size(), 75u);
    auto chunk = Base64Decode(line.substr(10, line.size() - 12));
    ASSERT_TRUE(chunk);
    // Each word holds whole UTF-8 characters: it does not start with a continuation byte.
    ASSERT_FALSE(chunk->empty());
    EXPECT_NE(static_cast<unsigned char>((*chunk)[0]) & 0xC0, 0x80);
    decoded += *chunk;
    ++words;
  }
  EXPECT_GT(words, 1u);
  EXPECT_EQ(decoded, subject);
}

TEST(MailMessageTest, BodyIsSevenBitOrQuotedPrintableWithCrlf) {
  bool qp = true;
  EXPECT_EQ(EncodeMailBody("a\nb\r\nc\rd", &qp), "a\r\nb\r\nc\r\nd\r\n");
  EXPECT_FALSE(qp);
  std::string text = "Grüße\n" + std::string(200, 'x') + " \n.dot line\nend=here\t";
  std::string enc = EncodeMailBody(text, &qp);
  EXPECT_TRUE(qp);
  for (std::string_view line : Lines(enc)) {
    EXPECT_LE(line.size(), 76u) << line;
    EXPECT_FALSE(line.ends_with(" ") || line.ends_with("\t")) << line;
    for (char c : line) EXPECT_LT(static_cast<unsigned char>(c), 0x80);
  }
  std::string want = "Grüße\r\n" + std::string(200, 'x') + " \r\n.dot line\r\nend=here\t\r\n";
  EXPECT_EQ(DecodeQuotedPrintable(enc), want);
  EXPECT_EQ(FormatMailDate(1'700'000'000'000), "Tue, 14 Nov 2023 22:13:20 +0000");
}

TEST(MailMessageTest, MessageCarriesTheRequiredHeaders) {
  Delivery d = Email();
  d.subject = "Grüße";
  std::string m = BuildMailMessage(d, 1'700'000'000'000);
  EXPECT_TRUE(m.starts_with("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
  for (const char* h :
       {"\r\nFrom: news@fairway.example\r\n", "\r\nTo: ada@example.org\r\n",
        "\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n", "\r\nMessage-ID: <welcome.mail.1@fairway>\r\n",
        "\r\nX-Fairway-Idempotency-Key: welcome.mail.1\r\n", "\r\nMIME-Version: 1.0\r\n",
        "\r\nContent-Type: text/plain; charset=UTF-8\r\n",
        "\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHi Ada\r\n"}) {
    EXPECT_NE(m.find(h), std::string::npos) << h;
  }
  EXPECT_TRUE(m.ends_with("\r\n"));
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      EXPECT_EQ(m[i - 1], '\r') << "bare LF at " << i;
    }
  }
}

}  // namespace
}  // namespace fairway::dispatch
