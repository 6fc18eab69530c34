#include "storage/store_env.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/listener.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace fairway::storage {

namespace {

// A file the store writes: fails writes with "no space" while a DiskFullProbe is set, and
// preallocates only if told to.
class StoreWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  // `wal_space_low` (write-ahead log files only, else null): set when the space ahead of the
  // log's end cannot be allocated.
  StoreWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, const DiskFullProbe* probe,
                    bool preallocate, std::atomic<bool>* wal_space_low)
      : FSWritableFileOwnerWrapper(std::move(file)),
        probe_(probe),
        preallocate_(preallocate),
        wal_space_low_(wal_space_low) {}
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    if (Full()) return Broken(NoSpace());
    LookAhead(data.size(), o, dbg);
    return Broken(FSWritableFileOwnerWrapper::Append(data, o, dbg));
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& v,
                           rocksdb::IODebugContext* dbg) override {
    if (Full()) return Broken(NoSpace());
    LookAhead(data.size(), o, dbg);
    return Broken(FSWritableFileOwnerWrapper::Append(data, o, v, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    if (Full()) return NoSpace();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& v,
                                     rocksdb::IODebugContext* dbg) override {
    if (Full()) return NoSpace();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, v, dbg);
  }
  void PrepareWrite(size_t offset, size_t len, const rocksdb::IOOptions& o,
                    rocksdb::IODebugContext* dbg) override {
    if (preallocate_) FSWritableFileOwnerWrapper::PrepareWrite(offset, len, o, dbg);
  }

 private:
  // A write-ahead log writer that once failed to append is unusable: RocksDB resumes it only by
  // switching to a new log, which it skips when its memtables are empty, and then aborts on
  // the next append (an assertion in Debian's build). So the log must not run out of space
  // mid-append: keep kWalLookAhead bytes allocated beyond its end, and when that fails, raise
  // `wal_space_low` so that the store refuses writes while this append still fits.
  // Should an append fail anyway, the store must send nothing more to the log (a sync of
  // another thread's write included) until it has recovered: the flag is raised here, before
  // RocksDB even sees the error.
  rocksdb::IOStatus Broken(rocksdb::IOStatus s) {
    if (!s.ok() && wal_space_low_) *wal_space_low_ = true;
    return s;
  }
  void LookAhead(size_t len, const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
    if (!wal_space_low_) return;
    uint64_t end = written_ + len;
    written_ = end;
    if (end + kWalLookAhead / 2 <= allocated_) return;
    uint64_t want = end + kWalLookAhead;
    if (Full() || !target()->Allocate(allocated_, want - allocated_, o, dbg).ok()) {
      *wal_space_low_ = true;
      return;
    }
    allocated_ = want;
  }
  bool Full() const { return probe_ && probe_->full; }
  static rocksdb::IOStatus NoSpace() { return rocksdb::IOStatus::NoSpace("disk full (probe)"); }
  const DiskFullProbe* probe_;
  const bool preallocate_;
  std::atomic<bool>* wal_space_low_;
  uint64_t written_ = 0;    // bytes appended so far
  uint64_t allocated_ = 0;  // bytes known to be allocated
};

// The file system under the store. Table files (.sst) are not preallocated: RocksDB would
// reserve 1.1 x the memtable or target file size (tens of MiB) for each flush and compaction
// output while it is written, which on a nearly full disk takes the room that the write-ahead
// log and recovery need, and buys nothing for files written once, sequentially. Write-ahead
// log files keep their preallocation (cheaper syncs). With a DiskFullProbe, files cannot be
// created and writes fail while it is set.
class StoreFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  StoreFileSystem(std::shared_ptr<rocksdb::FileSystem> target, const DiskFullProbe* probe,
                  std::atomic<bool>* wal_space_low)
      : FileSystemWrapper(std::move(target)), probe_(probe), wal_space_low_(wal_space_low) {}
  const char* Name() const override { return "fairway.StoreFileSystem"; }
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (probe_ && probe_->full) return rocksdb::IOStatus::NoSpace("disk full (probe)");
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->NewWritableFile(f, o, &file, dbg);
    if (s.ok()) {
      bool table = f.size() > 4 && f.compare(f.size() - 4, 4, ".sst") == 0;
      bool wal = f.size() > 4 && f.compare(f.size() - 4, 4, ".log") == 0;
      *r = std::make_unique<StoreWritableFile>(std::move(file), probe_, !table,
                                               wal ? wal_space_low_ : nullptr);
    }
    return s;
  }

 private:
  const DiskFullProbe* probe_;
  std::atomic<bool>* wal_space_low_;
};

// RocksDB's diagnostic log, on stderr (warnings and errors) instead of a LOG file in the data
// directory: on a full disk a failed write to that file made RocksDB abort at its next line
// (WritableFileWriter reused after an error, an assertion in Debian's build).
class StderrRocksLogger final : public rocksdb::Logger {
 public:
  StderrRocksLogger() : Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[1024];
    int n = std::vsnprintf(line, sizeof line, format, ap);
    if (n < 0) return;
    std::string out =
        fmt::format("rocksdb: {}\n", std::string_view(line, std::min<size_t>(n, sizeof line - 1)));
    std::fwrite(out.data(), 1, out.size(), stderr);
  }
};

// Turns off RocksDB's own recovery from background errors: the store resumes RocksDB itself
// (RocksStore::RunRecovery). RocksDB's recovery of a full disk waits in its SstFileManager for
// as much free space as every failed flush asked for, which was seen to never happen; and
// while it is under way, DB::Resume() only answers Busy.
class ManualRecoveryListener final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;
  }
};

}  // namespace

std::string ReservePath(const std::string& dir) { return dir + "/" + kReserveFileName; }

// Creates the reserve file of `bytes` (0600), preallocated so that the space is really held.
// Returns why not on failure (typically: no space), leaving no partial file behind.
Status CreateReserve(const std::string& dir, uint64_t bytes, const DiskFullProbe* probe) {
  const std::string path = ReservePath(dir), tmp = path + ".tmp";
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) == bytes && !ec) return Status::Ok();  // still held
  if (probe && probe->full) return Unavailable("cannot hold the disk reserve: disk full (probe)");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable(fmt::format("cannot create '{}': {}", tmp, std::strerror(errno)));
  }
  int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return Unavailable(fmt::format("cannot hold the disk reserve of {} MiB in '{}': {}",
                                   bytes >> 20, dir, std::strerror(err)));
  }
  return Status::Ok();
}

std::unique_ptr<rocksdb::Env> NewStoreEnv(const DiskFullProbe* probe,
                                          std::atomic<bool>* wal_space_low) {
  return rocksdb::NewCompositeEnv(
      std::make_shared<StoreFileSystem>(rocksdb::FileSystem::Default(), probe, wal_space_low));
}

std::shared_ptr<rocksdb::Logger> NewStderrRocksLogger() {
  return std::make_shared<StderrRocksLogger>();
}

std::shared_ptr<rocksdb::EventListener> NewManualRecoveryListener() {
  return std::make_shared<ManualRecoveryListener>();
}

}  // namespace fairway::storage
