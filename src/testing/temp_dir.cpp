#include "testing/temp_dir.h"

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fairway::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "fairway-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("cannot create a temporary directory");
    std::abort();
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  // For looking into a failed run (servers' logs, stores): FAIRWAY_KEEP_TEST_DIRS=1 keeps them.
  if (const char* keep = std::getenv("FAIRWAY_KEEP_TEST_DIRS"); keep && std::string(keep) == "1") {
    std::fprintf(stderr, "kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace fairway::testing
