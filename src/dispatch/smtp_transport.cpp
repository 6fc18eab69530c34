// Email over SMTP: the envelope, the relay's settings and the upload of the message
// (mail_message.h) a delivery becomes.

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "dispatch/curl_transfer.h"
#include "dispatch/mail_message.h"

namespace fairway::dispatch {
namespace {

size_t ReadPayload(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = std::min(size * n, t->payload.size() - t->read_pos);
  std::memcpy(buf, t->payload.data() + t->read_pos, bytes);
  t->read_pos += bytes;
  return bytes;
}

}  // namespace

Status SetUpEmail(Transfer* x, const Delivery& d, const DeliveryDispatcherOptions& options,
                  int64_t now_ms) {
  CURL* e = x->easy;
  x->payload = BuildMailMessage(d, now_ms);
  x->rcpt = curl_slist_append(nullptr, ("<" + d.mail_to + ">").c_str());
  if (x->rcpt == nullptr) return Internal("could not build the recipient list (out of memory)");
  curl_easy_setopt(e, CURLOPT_URL, options.smtp_url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(e, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
  curl_easy_setopt(e, CURLOPT_MAIL_FROM, ("<" + d.mail_from + ">").c_str());
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, x->rcpt);
  if (!options.smtp_username.empty()) {
    curl_easy_setopt(e, CURLOPT_USERNAME, options.smtp_username.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, options.smtp_password.c_str());
  }
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(x->payload.size()));
  curl_easy_setopt(e, CURLOPT_READFUNCTION, ReadPayload);
  curl_easy_setopt(e, CURLOPT_READDATA, x);
  return Status::Ok();
}

}  // namespace fairway::dispatch
