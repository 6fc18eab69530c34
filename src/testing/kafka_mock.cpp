#include "testing/kafka_mock.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace fairway::testing {

namespace {

// Reads one line without its newline; false at end of file.
bool ReadLine(FILE* in, std::string* line) {
  line->clear();
  int c;
  while ((c = fgetc(in)) != EOF && c != '\n') line->push_back(static_cast<char>(c));
  return c != EOF || !line->empty();
}

}  // namespace

KafkaMockCluster::KafkaMockCluster(int brokers) {
  int in[2], out[2];  // in: test -> child stdin; out: child stdout -> test
  if (pipe(in) != 0) {
    status_ = Internal("pipe failed");
    return;
  }
  if (pipe(out) != 0) {
    close(in[0]);
    close(in[1]);
    status_ = Internal("pipe failed");
    return;
  }
  std::string program = FAIRWAY_KAFKA_MOCK_BIN;
  std::string count = std::to_string(brokers);
  std::vector<char*> argv = {program.data(), count.data(), nullptr};
  pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls between fork and exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (pid_ < 0) {
    close(in[1]);
    close(out[0]);
    status_ = Internal("fork failed");
    return;
  }
  to_child_ = fdopen(in[1], "w");
  from_child_ = fdopen(out[0], "r");
  if (!ReadLine(from_child_, &bootstraps_) || bootstraps_.empty()) {
    status_ = Internal(fmt::format("{} exited before printing its bootstrap servers", program));
  }
}

KafkaMockCluster::~KafkaMockCluster() {
  // The mock keeps nothing worth a clean shutdown.
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (to_child_ != nullptr) fclose(to_child_);
  if (from_child_ != nullptr) fclose(from_child_);
}

Status KafkaMockCluster::Command(const std::string& line) {
  if (!status_.ok()) return status_;
  if (fprintf(to_child_, "%s\n", line.c_str()) < 0 || fflush(to_child_) != 0) {
    return Unavailable("the mock cluster process is gone");
  }
  std::string answer;
  if (!ReadLine(from_child_, &answer)) return Unavailable("the mock cluster process is gone");
  if (answer == "ok") return Status::Ok();
  if (answer.starts_with("error ")) answer.erase(0, 6);
  return FailedPrecondition(fmt::format("mock cluster: '{}': {}", line, answer));
}

Status KafkaMockCluster::CreateTopic(const std::string& topic, int partitions, int replication) {
  return Command(fmt::format("create {} {} {}", topic, partitions, replication));
}
Status KafkaMockCluster::SetBrokerDown(int id) { return Command(fmt::format("down {}", id)); }
Status KafkaMockCluster::SetBrokerUp(int id) { return Command(fmt::format("up {}", id)); }
Status KafkaMockCluster::SetLeader(const std::string& topic, int partition, int broker) {
  return Command(fmt::format("leader {} {} {}", topic, partition, broker));
}

}  // namespace fairway::testing
