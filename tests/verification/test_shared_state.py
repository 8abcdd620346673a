"""What a probe's calls change in a plugin's class and module is put back: counters, caches, generators and
names added, the containers in place (references held elsewhere see the restored value)."""

import torch

from dpbench.verification.shared_state import shared_state_restored

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
    assert all(not getattr(o, "__name__", "").startswith(("dpbench", "torch")) for o in owners)
    assert all(not getattr(o, "__module__", "").startswith(("dpbench", "torch")) for o in owners if isinstance(o, type))


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
