"""bench/profile_train.py: phases are timed exclusively, so nested phases add up to the step."""
import time

from bench.profile_train import Clock, TimedOptimizer


def test_nested_phases_are_exclusive_and_only_counted_when_on():
    clock = Clock()

    def inner():
        time.sleep(0.05)

    def outer():
        time.sleep(0.02)
        clock.timed(inner, "encoder bwd")()

    clock.timed(outer, "head bwd")()  # warm-up: not counted
    assert dict(clock.totals) == {}
    clock.on = True
    clock.timed(outer, "head bwd")()
    assert 0.045 < clock.totals["encoder bwd"] < 0.2
    assert 0.015 < clock.totals["head bwd"] < 0.045  # the outer phase without the 50 ms inside it


def test_timed_optimizer_counts_updates_and_forwards_attributes():
    class Optimizer:
        learn_rate = 0.1

        def __call__(self, key, weights, gradient):
            time.sleep(0.01)
            return weights, gradient

    clock = Clock()
    clock.on = True
    sgd = TimedOptimizer(Optimizer(), clock)
    assert sgd(("id", "W"), 1, 2) == (1, 2) and sgd.learn_rate == 0.1
    assert clock.totals["optimizer"] >= 0.009


def test_systems_take_turns_batch_by_batch_and_warmup_is_not_timed():
    import hashlib
    import types

    from bench.profile_train import Clock, profile_interleaved

    order = []

    def run(name):
        nlp = types.SimpleNamespace(update=lambda batch, sgd, losses: order.append((name, batch[0].reference.text)))
        batches = [[types.SimpleNamespace(reference=types.SimpleNamespace(text=f"b{i}"), predicted=[1, 2, 3])]
                   for i in range(4)]
        return {"system": name, "nlp": nlp, "batches": batches, "clock": Clock(), "optimizer": None, "warmup": 1,
                "step_times": [], "words": 0, "fingerprint": hashlib.sha1()}

    results = profile_interleaved([run("a"), run("b")])
    assert order == [(n, f"b{i}") for i in range(4) for n in ("a", "b")]
    assert [r["steps"] for r in results] == [3, 3] and results[0]["batches_sha1"] == results[1]["batches_sha1"]
    assert all(r["train_words_per_s"] > 0 for r in results)
