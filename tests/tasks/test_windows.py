from hypothesis import given, settings
from hypothesis import strategies as st

from bertforge.tasks.windows import best_windows, windows


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(1, 64), st.integers(1, 64), st.data())
def test_windows_cover_every_position_and_each_goes_to_its_max_context_window(n, width, stride, data):
    firsts = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    spans = windows(n, width, min(stride, width))
    assert spans[0][0] == 0 and spans[-1][1] == n and all(e - s == min(width, n) for s, e in spans)
    owner = best_windows(firsts, spans)
    assert all(spans[w][0] <= p < spans[w][1] for p, w in zip(firsts, owner))  # each position in its window
    for p, w in zip(firsts, owner):  # ... and no other window gives it more context on its shorter side
        mine = min(p - spans[w][0], spans[w][1] - 1 - p)
        assert all(min(p - s, e - 1 - p) <= mine for s, e in spans if s <= p < e)
    every = best_windows(range(n), spans)
    assert every == sorted(every)  # each window owns one contiguous run (QA stores it as a range)


def test_truncation_keeps_one_window_and_marks_the_rest_unowned():
    spans = windows(10, 4, 2, truncate=True)
    assert spans == [(0, 4)]
    assert best_windows(range(6), spans) == [0, 0, 0, 0, -1, -1]
