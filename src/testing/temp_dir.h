#pragma once
// TempDir: a temporary directory for one test, removed with everything in it when the object
// dies. Every suite that needs files (a store, a config file, a server's data directory) makes
// one per test, so tests never share or leave state on disk.

#include <string>

namespace fairway::testing {

class TempDir {
 public:
  // Creates a fresh, empty directory under the system's temporary directory ($TMPDIR or /tmp).
  // Aborts when it cannot: a test without its directory cannot run at all.
  TempDir();
  // Removes the directory and everything in it (errors are ignored).
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the directory (not created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace fairway::testing
