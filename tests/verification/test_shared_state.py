"""What a probe's calls change in a plugin's class and module is put back: counters, caches, generators and
names added, the containers in place (references held elsewhere see the restored value)."""

import collections
import types

import torch

from dpbench.verification.shared_state import _data, shared_state_restored

COUNT = 0
CACHE: dict[str, int] = {}
GENERATOR = torch.Generator().manual_seed(5)


class Plugin:
    seen: list[int] = []

    def touch(self) -> None:
        global COUNT
        COUNT += 1
        CACHE["x"] = 1
        type(self).seen.append(1)
        torch.rand(3, generator=GENERATOR)
        type(self).added = True
        globals()["ADDED_GLOBAL"] = 3


def test_a_probe_leaves_the_plugins_class_and_module_as_it_found_them():
    plugin, cache, seen, state = Plugin(), CACHE, Plugin.seen, GENERATOR.get_state()
    with shared_state_restored(plugin):
        plugin.touch()
        assert COUNT == 1 and CACHE == {"x": 1} and Plugin.seen == [1]
    assert COUNT == 0 and CACHE == {} and CACHE is cache and Plugin.seen == [] and Plugin.seen is seen
    assert torch.equal(GENERATOR.get_state(), state)
    assert not hasattr(Plugin, "added") and "ADDED_GLOBAL" not in globals()


def test_the_harness_and_libraries_are_not_touched():
    """Only the plugin's own classes and modules: a built-in mechanism adapted to the plugin form brings
    dpbench's and torch's modules into its class hierarchy, and those are never rewritten."""
    from dpbench.privacy.adapter import as_researcher_plugin
    from dpbench.privacy.plugin_streams import plugin_owners
    from mechanisms.fixed import FixedClipping

    cls = as_researcher_plugin(FixedClipping)
    owners = plugin_owners(cls.__new__(cls))
    modules = [o for o in owners if isinstance(o, types.ModuleType)]
    assert all(not m.__name__.startswith(("dpbench", "torch")) for m in modules)
    # the adapter's class is made at run time (no module holds it, so it counts as the plugin's): it holds code only
    assert all(not _data(vars(o)) for o in owners if isinstance(o, type))


LAYER = torch.nn.Linear(2, 2)


class UsesALayer(Plugin):
    def touch(self) -> None:
        LAYER.weight.data.zero_()


def test_a_librarys_object_in_the_plugins_module_is_left_alone():
    """A torch module held in a plugin's globals keeps its identity and its parameters' (an optimizer may hold
    them); its tensors are not the plugin's bookkeeping."""
    weight = LAYER.weight
    with shared_state_restored(UsesALayer()):
        UsesALayer().touch()
    assert LAYER.weight is weight and float(LAYER.weight.abs().sum()) == 0.0


def _counter() -> None:
    """A function whose attribute counts calls: state every copy of a plugin shares, by another name."""
    _counter.calls = getattr(_counter, "calls", 0) + 1


class ClaimsToBeTorch:
    """A plugin class that names a library's module as its own (a fifth red team's kept a call counter here,
    and in a function's attribute, where the snapshot did not look)."""

    __module__ = "torch.nn"
    calls = 0

    def touch(self) -> None:
        _counter()
        type(self).calls += 1
        globals()["CLAIMED_GLOBAL"] = 1


def test_function_attributes_and_classes_that_claim_a_librarys_module_are_put_back():
    plugin = ClaimsToBeTorch()
    with shared_state_restored(plugin):
        plugin.touch()
        assert ClaimsToBeTorch.calls == 1 and _counter.calls == 1
    assert ClaimsToBeTorch.calls == 0 and not hasattr(_counter, "calls") and "CLAIMED_GLOBAL" not in globals()


class HiddenTally:
    """A counter its pickle leaves out (``__reduce__``) and its deep copy keeps: a sixth red team's, which went
    unrestored when the restore skipped values whose pickle had not changed."""

    def __init__(self) -> None:
        self.calls = 0

    def __reduce__(self):
        return (HiddenTally, ())


class CountsInAHiddenTally:
    tally = HiddenTally()
    plain: list[int] = [1, 2]

    def touch(self) -> None:
        type(self).tally.calls += 1


def test_a_value_whose_pickle_hides_a_change_is_put_back_all_the_same():
    plugin, plain = CountsInAHiddenTally(), CountsInAHiddenTally.plain
    with shared_state_restored(plugin) as snapshot:
        for _ in range(3):
            snapshot.restore()  # before each of a probe's calls
            plugin.touch()
            assert CountsInAHiddenTally.tally.calls == 1
    assert CountsInAHiddenTally.tally.calls == 0
    assert CountsInAHiddenTally.plain is plain and plain == [1, 2]  # plain data no call changed: left as it is


class KeepsTensorsInItsClass:
    """Shared tensors the calls only read: a restore that replaced them, or bumped their version counter, told
    the plugin that a probe had happened (a new ``id``, a moved ``_version``)."""

    scale = torch.ones(3)
    table: dict[str, torch.Tensor] = {"t": torch.zeros(2)}
    written = torch.zeros(1)

    def touch(self) -> None:
        type(self).written += 1


def test_what_no_call_changed_keeps_its_identity_and_version_and_what_one_did_gets_its_version_back():
    plugin = KeepsTensorsInItsClass()
    scale, entry, written = plugin.scale, plugin.table["t"], plugin.written
    versions = (scale._version, entry._version, written._version)
    with shared_state_restored(plugin) as snapshot:
        for _ in range(3):
            snapshot.restore()
            plugin.touch()
    assert plugin.scale is scale and plugin.table["t"] is entry and plugin.written is written
    assert (scale._version, entry._version, written._version) == versions
    assert float(written) == 0.0


__calls__ = collections.Counter()  # a dunder name: the module's data all the same
RECENT: collections.deque = collections.deque(maxlen=5)
HELPER = types.ModuleType("plugin_helper_module")  # a module of the plugin's own code (not a library's)
HELPER.CALLS = collections.Counter()


class CountsWhereTheSnapshotDidNotLook:
    """An eighth red team's: counters under a dunder global read through ``globals()``, in a module-level deque
    (a library's container type) and in a helper module of the plugin's own; each showed a probe's calls."""

    def touch(self) -> None:
        globals()["__calls__"]["step"] += 1
        RECENT.append(1)
        HELPER.CALLS["step"] += 1


def test_dunder_globals_library_containers_and_helper_modules_are_put_back():
    plugin, recent = CountsWhereTheSnapshotDidNotLook(), RECENT
    with shared_state_restored(plugin) as snapshot:
        for _ in range(3):
            snapshot.restore()
            plugin.touch()
        assert __calls__["step"] == 1 and list(RECENT) == [1] and HELPER.CALLS["step"] == 1
    assert not __calls__ and not RECENT and RECENT is recent and not HELPER.CALLS


class Registry:
    """A singleton whose ``__deepcopy__`` returns itself: there is no snapshot of it to restore from (the restore
    emptied its attributes)."""

    def __init__(self) -> None:
        self.calls = 0

    def __deepcopy__(self, memo: dict) -> "Registry":
        return self


REGISTRY = Registry()


class CountsInASingleton:
    def touch(self) -> None:
        REGISTRY.calls += 1


def test_an_object_that_copies_to_itself_is_left_as_the_calls_leave_it():
    with shared_state_restored(CountsInASingleton()) as snapshot:
        snapshot.restore()
        CountsInASingleton().touch()
    assert REGISTRY.calls == 1  # not wiped; what a probe's calls leave there is the probe-trace check's
