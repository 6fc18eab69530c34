#pragma once
// Runs a test peer (a script in tests/peers/) as a child process (testing::ChildProcess): starts
// it, reads the port it prints as its first stdout line, and kills and reaps it with this object.

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "testing/child_process.h"

namespace fairway::dispatch::testing {

class PeerProcess {
 public:
  // Starts `program` with `args` (argv[0] is `program`). Check ok() / error() afterwards.
  PeerProcess(const std::string& program, const std::vector<std::string>& args)
      : child_(program, args) {
    if (!child_.started()) {
      error_ = child_.error();
      return;
    }
    // The peer prints its port once it listens; EOF means it died first.
    std::string line;
    if (!child_.ReadLine(&line) || sscanf(line.c_str(), "%d", &port_) != 1) {
      port_ = 0;
      error_ = "peer " + (args.empty() ? program : args[0]) + " exited before printing its port";
    }
    // Peers print nothing else on stdout, so closing our end cannot make them block.
    child_.CloseStdout();
  }

  bool ok() const { return port_ > 0; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }

 private:
  ::fairway::testing::ChildProcess child_;  // killed and reaped with this object
  int port_ = 0;
  std::string error_;
};

// The records a peer wrote to its record file: one JSON object per line. A last line without
// its newline is one the peer is still writing, and is left for the next read.
inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace fairway::dispatch::testing
