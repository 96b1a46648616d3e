"""The driver checks a deployment's run status (a `flwr ls` process each) at most every STATUS_EVERY s."""

from fedjax_rhd.federation.flower import backend


def test_status_is_checked_at_most_once_per_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(backend.time, "monotonic", lambda: clock[0])
    calls = []

    def status():
        calls.append(clock[0])
        return "Flower run finished:failed"

    check = backend._at_most_every(10.0, status)
    assert check() == "Flower run finished:failed"  # the first call checks at once
    clock[0] += 5.0
    assert check() is None  # too soon: assumed alive, no `flwr ls`
    clock[0] += 5.0
    assert check() == "Flower run finished:failed"
    assert calls == [100.0, 110.0]
