// add_to_list, remove_from_list, add_tag, remove_tag and add_to_account: the lead's lists, tags
// and account, changed by generated activities that the leads processor applies.

#include "campaigns/actions/action_kinds.h"
#include "common/json_writer.h"
#include "model/generated_activities.h"

namespace fairway::campaigns::actions {

namespace {

// A list or a tag the lead joins or leaves.
class MembershipAction final : public Action {
 public:
  enum class Set : uint8_t { kList, kTag };

  Set set = Set::kList;
  bool add = true;
  std::string name;  // the list or tag, as written (not a template)

  std::string_view kind() const override {
    if (set == Set::kList) return add ? "add_to_list" : "remove_from_list";
    return add ? "add_tag" : "remove_tag";
  }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    w.Key(set == Set::kList ? "list" : "tag").String(name).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    if (set == Set::kList) {
      using model::ListMembershipChanged;
      ctx.overlay().lists[name] = add;
      EmitGenerated(ctx,
                    add ? ListMembershipChanged::kAddedEvent : ListMembershipChanged::kRemovedEvent,
                    ListMembershipChanged{.list = name});
    } else {
      using model::TagChanged;
      ctx.overlay().tags[name] = add;
      EmitGenerated(ctx, add ? TagChanged::kAddedEvent : TagChanged::kRemovedEvent,
                    TagChanged{.tag = name});
    }
    return Outcome::kExecuted;
  }
};

std::shared_ptr<const Action> ParseMembership(const ActionInput& in, MembershipAction::Set set,
                                              bool add) {
  std::string_view key = set == MembershipAction::Set::kList ? "list" : "tag";
  if (!in.Only({"action", key})) return nullptr;
  auto a = std::make_shared<MembershipAction>();
  a->set = set;
  a->add = add;
  a->name = in.Str(key, true, 200);
  return a;
}

class AddToAccountAction final : public Action {
 public:
  std::string account;  // a template

  std::string_view kind() const override { return "add_to_account"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind()).Key("account").String(account).EndObject();
  }

  Result<Outcome> Execute(ActionContext& ctx) const override {
    std::string id = ctx.Render(account, Escape::kLine);
    if (id.empty()) return ctx.Fail("the account id is empty");
    ctx.overlay().account = id;
    EmitGenerated(ctx, model::AddedToAccount::kEvent, model::AddedToAccount{.account_id = id});
    return Outcome::kExecuted;
  }
};

}  // namespace

std::shared_ptr<const Action> ParseAddToList(DefinitionParser& p, const json::object& o,
                                             const std::string& path) {
  return ParseMembership({p, o, path}, MembershipAction::Set::kList, true);
}

std::shared_ptr<const Action> ParseRemoveFromList(DefinitionParser& p, const json::object& o,
                                                  const std::string& path) {
  return ParseMembership({p, o, path}, MembershipAction::Set::kList, false);
}

std::shared_ptr<const Action> ParseAddTag(DefinitionParser& p, const json::object& o,
                                          const std::string& path) {
  return ParseMembership({p, o, path}, MembershipAction::Set::kTag, true);
}

std::shared_ptr<const Action> ParseRemoveTag(DefinitionParser& p, const json::object& o,
                                             const std::string& path) {
  return ParseMembership({p, o, path}, MembershipAction::Set::kTag, false);
}

std::shared_ptr<const Action> ParseAddToAccount(DefinitionParser& p, const json::object& o,
                                                const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "account"})) return nullptr;
  auto a = std::make_shared<AddToAccountAction>();
  a->account = in.Str("account", true, 200);
  return a;
}

}  // namespace fairway::campaigns::actions
