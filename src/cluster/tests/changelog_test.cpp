#include "cluster/changelog.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "cluster/slot_membership.h"
#include "storage/keys.h"
#include "storage/schema.h"
#include "testing/kafka_mock.h"
#include "testing/status_matchers.h"
#include "testing/store_and_log.h"
#include "testing/temp_dir.h"

namespace fairway::cluster {
namespace {

using ::fairway::testing::KafkaMockCluster;
using ::fairway::testing::StatusIs;
using ::fairway::testing::TempDir;

constexpr uint32_t kSlots = 4;

KafkaMockCluster& Cluster() { return KafkaMockCluster::Shared(); }
std::string FreshPrefix() { return KafkaMockCluster::FreshTopicPrefix("c"); }

// A node: its own store, and its changelog over it.
struct Node {
  Node(const std::string& prefix, const std::string& name,
       const std::function<void(ChangelogOptions&)>& adjust = {}) {
    auto s = testing::OpenFairwayStore(dir.Sub("store"));
    EXPECT_OK(s);
    local = std::move(s).value();
    ChangelogOptions o;
    o.kafka.brokers = Cluster().bootstrap_servers();
    o.kafka.topic_prefix = prefix;
    o.kafka.create_topics = false;
    o.kafka.delivery_timeout_ms = 2'000;
    o.kafka.request_timeout_ms = 5'000;
    o.node_id = name;
    o.slots = kSlots;
    if (adjust) adjust(o);
    auto c = Changelog::Open(o, local.get());
    EXPECT_OK(c);
    changelog = std::move(c).value();
  }
  Status Put(const std::string& tenant, const std::string& key, const std::string& value,
             storage::ColumnFamily cf = storage::kEngineState) {
    storage::WriteBatch b;
    b.Put(cf, tenant + std::string(1, '\0') + key, value);
    return changelog->store()->Write(b, /*sync=*/false);
  }
  std::string Get(const std::string& tenant, const std::string& key,
                  storage::ColumnFamily cf = storage::kEngineState) {
    auto v = local->Get(cf, tenant + std::string(1, '\0') + key);
    EXPECT_OK(v);
    return v.ok() ? v->value_or("<none>") : "<error>";
  }
  Status Delete(const std::string& tenant, const std::string& key,
                storage::ColumnFamily cf = storage::kEngineState) {
    storage::WriteBatch b;
    b.Delete(cf, tenant + std::string(1, '\0') + key);
    return changelog->store()->Write(b, /*sync=*/false);
  }
  Status Count(const std::string& tenant, const std::string& key, int64_t delta) {
    storage::WriteBatch b;
    b.Merge(storage::kCampaignStats, tenant + std::string(1, '\0') + key,
            storage::EncodeCounter(delta));
    return changelog->store()->Write(b, /*sync=*/false);
  }
  // Every state row of `tenant`: (family, key) -> value.
  std::map<std::pair<int, std::string>, std::string> Rows(const std::string& tenant) {
    std::map<std::pair<int, std::string>, std::string> out;
    std::string begin = tenant + std::string(1, '\0');
    for (auto cf : storage::kTenantStateFamilies) {
      auto it = local->NewIterator(cf, begin, storage::PrefixEnd(begin));
      for (it->Seek(begin); it->Valid(); it->Next()) {
        out[{cf, std::string(it->key())}] = std::string(it->value());
      }
      EXPECT_OK(it->status());
    }
    return out;
  }
  // A snapshot of `slot` listing `tenants`.
  Result<SnapshotStats> Snapshot(uint32_t slot, std::vector<std::string> tenants) {
    return changelog->Snapshot(slot, [tenants] {
      std::vector<TenantId> ids;
      for (const auto& t : tenants) ids.emplace_back(t);
      return ids;
    });
  }
  TempDir dir;
  std::unique_ptr<storage::Store> local;
  std::unique_ptr<Changelog> changelog;
};

class ChangelogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(Cluster().status());
    prefix_ = FreshPrefix();
    ASSERT_OK(Cluster().CreateTopic(Changelog::TopicFor(prefix_), kSlots, 3));
  }
  // A tenant of slot `slot`, and one of another slot.
  static std::string TenantOf(uint32_t slot, int n = 0) {
    for (int i = 0;; ++i) {
      std::string t = fmt::format("t{}", i);
      if (SlotOf(TenantId(t), kSlots) == slot && n-- == 0) return t;
    }
  }
  std::string prefix_;
};

TEST_F(ChangelogTest, ASlotsStateFollowsItToAnotherNodeAndNothingElseDoes) {
  Node a(prefix_, "a"), b(prefix_, "b");
  const std::string acme = TenantOf(1), other = TenantOf(2);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "lead-1", "v1"));
  ASSERT_OK(a.Put(acme, "lead-2", "v2", storage::kOutbox));
  ASSERT_OK(a.Put(acme, "msg-1", "dedup", storage::kLogDedup));  // the node's own, not state
  ASSERT_OK(a.Put(other, "lead-9", "v9"));                       // a slot a does not own
  EXPECT_EQ(a.Get(acme, "lead-1"), "v1");
  EXPECT_EQ(a.Get(other, "lead-9"), "v9");

  auto taken = b.changelog->Take(1, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_FALSE(taken->kept_local);
  EXPECT_EQ(taken->batches_applied, 2u);
  EXPECT_EQ(b.Get(acme, "lead-1"), "v1");
  EXPECT_EQ(b.Get(acme, "lead-2", storage::kOutbox), "v2");
  EXPECT_EQ(b.Get(acme, "msg-1", storage::kLogDedup), "<none>");
  EXPECT_EQ(b.Get(other, "lead-9"), "<none>");
  EXPECT_GT(taken->epoch, 0);
  EXPECT_EQ(b.changelog->Epoch(1), taken->epoch);
  EXPECT_EQ(b.changelog->Epoch(2), std::nullopt);
}

TEST_F(ChangelogTest, ATenantsWritesGoToTheSlotItIsPlacedInNotItsHashSlot) {
  // "placed" belongs to slot 2 by its placement; its hash slot is 1.
  const std::string placed = TenantOf(1);
  auto place = [placed](ChangelogOptions& o) {
    o.slot_of = [placed](const TenantId& t) { return t.str() == placed ? 2u : SlotOf(t, kSlots); };
  };
  Node a(prefix_, "a", place), b(prefix_, "b", place), c(prefix_, "c");
  ASSERT_OK(a.changelog->Take(2, {TenantId(placed)}));
  ASSERT_OK(a.Put(placed, "lead-1", "v1"));
  // Journaled to slot 2: its new owner has the row, the hash slot's owner does not.
  ASSERT_OK(b.changelog->Take(2, {TenantId(placed)}));
  EXPECT_EQ(b.Get(placed, "lead-1"), "v1");
  ASSERT_OK(c.changelog->Take(1, {TenantId(placed)}));
  EXPECT_EQ(c.Get(placed, "lead-1"), "<none>");
}

TEST_F(ChangelogTest, WritesOfAFencedOwnerAreIgnoredByEveryLaterRestore) {
  Node a(prefix_, "a"), b(prefix_, "b"), c(prefix_, "c");
  const std::string acme = TenantOf(3);
  ASSERT_OK(a.changelog->Take(3, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "from-a"));
  ASSERT_OK(b.changelog->Take(3, {TenantId(acme)}));
  EXPECT_EQ(b.Get(acme, "k"), "from-a");
  // a missed the hand-over and goes on writing under its old epoch.
  ASSERT_OK(a.Put(acme, "zombie", "from-a-after-b-took-it"));
  ASSERT_OK(a.Put(acme, "k", "from-a-late"));
  ASSERT_OK(b.Put(acme, "k2", "from-b"));
  auto taken = c.changelog->Take(3, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_EQ(c.Get(acme, "k"), "from-a");
  EXPECT_EQ(c.Get(acme, "k2"), "from-b");
  EXPECT_EQ(c.Get(acme, "zombie"), "<none>");
  EXPECT_EQ(taken->batches_applied, 2u);  // a's first write and b's
}

TEST_F(ChangelogTest, ACleanReleaseKeepsTheLocalRowsAndOnlyLaterRecordsAreRead) {
  Node a(prefix_, "a"), b(prefix_, "b");
  const std::string acme = TenantOf(0);
  ASSERT_OK(a.changelog->Take(0, {TenantId(acme)}));
  for (int i = 0; i < 20; ++i) ASSERT_OK(a.Put(acme, fmt::format("k{}", i), "a"));
  ASSERT_OK(a.changelog->Release(0, /*clean=*/true));
  EXPECT_EQ(a.changelog->Epoch(0), std::nullopt);
  ASSERT_OK(b.changelog->Take(0, {TenantId(acme)}));
  ASSERT_OK(b.Put(acme, "k0", "b"));
  ASSERT_OK(b.changelog->Release(0, /*clean=*/true));

  auto again = a.changelog->Take(0, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_TRUE(again->kept_local);
  // b's owner record, its batch and its release: not a's twenty batches again.
  EXPECT_EQ(again->records, 3u);
  EXPECT_EQ(again->batches_applied, 1u);
  EXPECT_EQ(a.Get(acme, "k0"), "b");
  EXPECT_EQ(a.Get(acme, "k19"), "a");
}

TEST_F(ChangelogTest, ALocalWriteAfterTheReleaseMakesTheNextTakeReplaceTheRows) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(2);
  ASSERT_OK(a.changelog->Take(2, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "journaled"));
  ASSERT_OK(a.changelog->Release(2, /*clean=*/true));
  ASSERT_OK(a.Put(acme, "stray", "local only"));  // not owned: not journaled
  EXPECT_EQ(a.Get(acme, "stray"), "local only");
  auto again = a.changelog->Take(2, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_FALSE(again->kept_local);
  EXPECT_EQ(a.Get(acme, "stray"), "<none>");
  EXPECT_EQ(a.Get(acme, "k"), "journaled");
}

TEST_F(ChangelogTest, ALostSlotIsNotReleasedAndItsRowsAreReplacedOnReturn) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(1);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "v"));
  ASSERT_OK(a.changelog->Release(1, /*clean=*/false));
  auto again = a.changelog->Take(1, {TenantId(acme)});
  ASSERT_OK(again);
  EXPECT_FALSE(again->kept_local);
  EXPECT_EQ(a.Get(acme, "k"), "v");
}

TEST_F(ChangelogTest, AWriteKafkaDoesNotAcknowledgeIsNotWrittenLocally) {
  Node a(prefix_, "a");
  const std::string acme = TenantOf(1);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  for (int b = 1; b <= 3; ++b) ASSERT_OK(Cluster().SetBrokerDown(b));
  Status st = a.Put(acme, "k", "v");
  for (int b = 1; b <= 3; ++b) ASSERT_OK(Cluster().SetBrokerUp(b));
  EXPECT_THAT(st, StatusIs(StatusCode::kUnavailable, ::testing::HasSubstr("changelog")));
  EXPECT_EQ(a.Get(acme, "k"), "<none>");
  // Once Kafka is back, a retried write goes through (the engine retries a refused commit
  // until it does; the clients reconnect with back-off meanwhile).
  for (int attempt = 0; attempt < 30 && !st.ok(); ++attempt) {
    EXPECT_EQ(a.Get(acme, "k"), "<none>");
    st = a.Put(acme, "k", "v");
  }
  ASSERT_OK(st);
  EXPECT_EQ(a.Get(acme, "k"), "v");
}

TEST_F(ChangelogTest, SlotsOutOfRangeAreRefused) {
  Node a(prefix_, "a");
  EXPECT_THAT(a.changelog->Take(kSlots, {}), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(a.changelog->Release(kSlots, true), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(a.Snapshot(kSlots, {}), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_FALSE(a.changelog->SnapshotDue(kSlots));
}

TEST_F(ChangelogTest, ARestoreStartsAtTheLatestSnapshotAndBuildsTheSameRows) {
  Node a(prefix_, "a"), b(prefix_, "b"), c(prefix_, "c");
  const std::string acme = TenantOf(1), beta = TenantOf(1, 1);
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme), TenantId(beta)}));
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK(a.Put(acme, fmt::format("k{:02}", i), fmt::format("v{}", i)));
    ASSERT_OK(a.Put(beta, fmt::format("o{:02}", i), "out", storage::kOutbox));
    ASSERT_OK(a.Count(acme, "sent", 2));
  }
  ASSERT_OK(a.Put(acme, "k00", "overwritten"));
  ASSERT_OK(a.Delete(acme, "k01"));
  auto snap = a.Snapshot(1, {acme, beta});
  ASSERT_OK(snap);
  EXPECT_EQ(snap->rows, 40u + 39u + 1u);  // beta's outbox, acme's keys but k01, the counter
  EXPECT_GE(snap->records, 1u);
  EXPECT_FALSE(snap->deleted_before);  // the mock cluster has no DeleteRecords
  ASSERT_OK(a.Put(acme, "k02", "after the snapshot"));
  ASSERT_OK(a.Delete(acme, "k03"));
  ASSERT_OK(a.Count(acme, "sent", 5));

  auto taken = b.changelog->Take(1, {TenantId(acme), TenantId(beta)});
  ASSERT_OK(taken);
  EXPECT_EQ(taken->snapshot, snap->begin);
  EXPECT_EQ(taken->snapshot_rows, snap->rows);
  // The snapshot's records and the three batches after it: none of the 121 before it.
  EXPECT_EQ(taken->records, 1 + snap->records + 1 + 3);
  EXPECT_EQ(taken->batches_applied, 3u);
  EXPECT_EQ(b.Rows(acme), a.Rows(acme));
  EXPECT_EQ(b.Rows(beta), a.Rows(beta));
  EXPECT_EQ(b.Get(acme, "k02"), "after the snapshot");
  EXPECT_EQ(b.Get(acme, "k03"), "<none>");
  EXPECT_EQ(b.Get(acme, "sent", storage::kCampaignStats), storage::EncodeCounter(85));

  // The next owner's snapshot is the one the next restore starts from.
  ASSERT_OK(b.Put(acme, "k04", "from b"));
  auto second = b.Snapshot(1, {acme, beta});
  ASSERT_OK(second);
  EXPECT_GT(second->begin, snap->begin);
  auto again = c.changelog->Take(1, {TenantId(acme), TenantId(beta)});
  ASSERT_OK(again);
  EXPECT_EQ(again->snapshot, second->begin);
  EXPECT_EQ(again->batches_applied, 0u);
  EXPECT_EQ(c.Rows(acme), b.Rows(acme));
  EXPECT_EQ(c.Rows(beta), b.Rows(beta));
}

TEST_F(ChangelogTest, BatchesWrittenWhileASnapshotIsSentOutweighItsRows) {
  const std::string acme = TenantOf(2);
  Node* writer = nullptr;
  // One row per record; after the first, the owner goes on writing rows the later records
  // hold as they were when the snapshot began.
  Node a(prefix_, "a", [&](ChangelogOptions& o) {
    o.snapshot_record_bytes = 1;
    o.after_snapshot_record = [&](uint32_t, size_t n) {
      if (n != 1) return;
      EXPECT_OK(writer->Put(acme, "k7", "newer"));
      EXPECT_OK(writer->Delete(acme, "k8"));
      EXPECT_OK(writer->Put(acme, "k9", "newer"));
    };
  });
  writer = &a;
  Node b(prefix_, "b");
  ASSERT_OK(a.changelog->Take(2, {TenantId(acme)}));
  for (int i = 0; i < 10; ++i) ASSERT_OK(a.Put(acme, fmt::format("k{}", i), "older"));
  auto snap = a.Snapshot(2, {acme});
  ASSERT_OK(snap);
  EXPECT_EQ(snap->records, 10u);
  EXPECT_EQ(a.Get(acme, "k7"), "newer");

  auto taken = b.changelog->Take(2, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_EQ(taken->snapshot, snap->begin);
  EXPECT_EQ(taken->batches_applied, 3u);
  EXPECT_EQ(b.Get(acme, "k7"), "newer");
  EXPECT_EQ(b.Get(acme, "k8"), "<none>");
  EXPECT_EQ(b.Get(acme, "k9"), "newer");
  EXPECT_EQ(b.Get(acme, "k6"), "older");
  EXPECT_EQ(b.Rows(acme), a.Rows(acme));
}

TEST_F(ChangelogTest, AFencedOwnerWritesNoSnapshotAndRestoresKeepIgnoringItsWrites) {
  Node a(prefix_, "a"), b(prefix_, "b"), c(prefix_, "c");
  const std::string acme = TenantOf(3);
  ASSERT_OK(a.changelog->Take(3, {TenantId(acme)}));
  ASSERT_OK(a.Put(acme, "k", "from-a"));
  auto early = a.Snapshot(3, {acme});
  ASSERT_OK(early);
  ASSERT_OK(b.changelog->Take(3, {TenantId(acme)}));
  ASSERT_OK(b.Put(acme, "k2", "from-b"));
  // a missed the hand-over: b's records lie among its own, so it may not vouch for a snapshot.
  EXPECT_THAT(a.Snapshot(3, {acme}),
              StatusIs(StatusCode::kFailedPrecondition, ::testing::HasSubstr("another writer")));
  ASSERT_OK(a.Put(acme, "zombie", "from-a-after-b-took-it"));
  EXPECT_THAT(a.Snapshot(3, {acme}), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(a.changelog->SnapshotDue(3));

  auto taken = c.changelog->Take(3, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_EQ(taken->snapshot, early->begin);
  EXPECT_EQ(c.Get(acme, "k"), "from-a");
  EXPECT_EQ(c.Get(acme, "k2"), "from-b");
  EXPECT_EQ(c.Get(acme, "zombie"), "<none>");
}

TEST_F(ChangelogTest, ASnapshotIsDueAfterTheConfiguredBytesAndNeverWithZero) {
  auto with = [](uint64_t bytes) {
    return [bytes](ChangelogOptions& o) { o.snapshot_bytes = bytes; };
  };
  // Each node owns a slot of its own.
  Node one(prefix_, "one", with(1)), some(prefix_, "some", with(2'000)),
      never(prefix_, "never", with(0)), huge(prefix_, "huge", with(UINT64_MAX));
  std::vector<Node*> nodes = {&one, &some, &never, &huge};
  EXPECT_THAT(one.Snapshot(0, {TenantOf(0)}),
              StatusIs(StatusCode::kFailedPrecondition, ::testing::HasSubstr("not owned")));
  for (uint32_t slot = 0; slot < kSlots; ++slot) {
    Node& n = *nodes[slot];
    ASSERT_OK(n.changelog->Take(slot, {TenantId(TenantOf(slot))}));
    EXPECT_FALSE(n.changelog->SnapshotDue(slot));
    ASSERT_OK(n.Put(TenantOf(slot), "k", std::string(100, 'x')));
  }
  EXPECT_TRUE(one.changelog->SnapshotDue(0));
  EXPECT_FALSE(some.changelog->SnapshotDue(1));
  for (int i = 0; i < 20; ++i) ASSERT_OK(some.Put(TenantOf(1), "k", std::string(100, 'x')));
  EXPECT_TRUE(some.changelog->SnapshotDue(1));
  EXPECT_FALSE(some.changelog->SnapshotDue(0));  // not its slot
  ASSERT_OK(some.Snapshot(1, {TenantOf(1)}));
  EXPECT_FALSE(some.changelog->SnapshotDue(1));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(never.Put(TenantOf(2), "k", std::string(100, 'x')));
    ASSERT_OK(huge.Put(TenantOf(3), "k", std::string(100, 'x')));
  }
  EXPECT_FALSE(never.changelog->SnapshotDue(2));
  EXPECT_FALSE(huge.changelog->SnapshotDue(3));
  // A restore that applied batches counts them: the next snapshot is due as soon.
  ASSERT_OK(never.changelog->Release(2, /*clean=*/false));
  Node next(prefix_, "next", with(1'000));
  ASSERT_OK(next.changelog->Take(2, {TenantId(TenantOf(2))}));
  EXPECT_TRUE(next.changelog->SnapshotDue(2));
}

TEST_F(ChangelogTest, AReleaseCutsASnapshotShortAndRestoresDoNotStartFromIt) {
  const std::string acme = TenantOf(1);
  std::thread releasing;
  Node* self = nullptr;
  Node a(prefix_, "a", [&](ChangelogOptions& o) {
    o.snapshot_record_bytes = 1;
    o.after_snapshot_record = [&](uint32_t slot, size_t n) {
      if (n != 1) return;
      releasing = std::thread([&, slot] { EXPECT_OK(self->changelog->Release(slot, true)); });
      // Release gives the slot up first, then waits for the snapshot to stop.
      while (self->changelog->Epoch(slot).has_value()) std::this_thread::yield();
    };
  });
  self = &a;
  Node b(prefix_, "b");
  ASSERT_OK(a.changelog->Take(1, {TenantId(acme)}));
  for (int i = 0; i < 5; ++i) ASSERT_OK(a.Put(acme, fmt::format("k{}", i), "v"));
  EXPECT_THAT(a.Snapshot(1, {acme}), StatusIs(StatusCode::kAborted));
  releasing.join();
  auto taken = b.changelog->Take(1, {TenantId(acme)});
  ASSERT_OK(taken);
  EXPECT_EQ(taken->snapshot, -1);
  EXPECT_EQ(taken->batches_applied, 5u);
  EXPECT_EQ(b.Rows(acme), a.Rows(acme));
}

}  // namespace
}  // namespace fairway::cluster
