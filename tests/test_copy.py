import torch

from lmdni.data.copy import END, PATTERNS, REPEAT0, START, STOP, CopyStream


def stream_symbols(stream, windows):
    xs, ys, masks = [], [], []
    for _ in range(windows):
        x, y, _, ends, mask = stream.next_window()
        assert not ends  # an endless stream: there is always a future
        xs.append(x[:, 0]), ys.append(y[:, 0]), masks.append(mask[:, 0])
    return torch.cat(xs).tolist(), torch.cat(ys).tolist(), torch.cat(masks).tolist()


def test_copy_episodes_and_mask():
    stream = CopyStream(batch_size=2, unroll=3, start_length=3, seed=1, phase="aligned")
    xs, ys, mask = stream_symbols(stream, 10)
    assert ys[:-1] == xs[1:]  # targets are the next inputs: one continuous stream per column
    seq = [xs[0]] + ys
    assert seq[0] == START and seq[4] == STOP
    assert all(0 <= s < PATTERNS for s in seq[1:4])
    assert seq[5:8] == seq[1:4] and seq[8] == START  # the copy, then the next episode
    counted = [y for y, m in zip(ys, mask) if m]
    assert counted[:3] == seq[1:4]  # exactly the reproduced patterns count
    assert mask[:7] == [False, False, False, False, True, True, True]


def test_repeat_copy_episode():
    stream = CopyStream(batch_size=1, unroll=5, repeat=True, start_length=2, seed=0, phase="aligned")
    stream.repeats = 3
    xs, ys, mask = stream_symbols(stream, 4)
    seq = [xs[0]] + ys
    assert seq[0] == START and seq[3] == REPEAT0 + 2
    assert seq[4:10] == seq[1:3] * 3 and seq[10] == END
    assert sum(mask[:11]) == 7  # six reproduced patterns and END


def test_curriculum_advances_below_threshold_and_counts_episodes():
    stream = CopyStream(batch_size=4, unroll=5, start_length=2, window_episodes=8, seed=0)
    for _ in range(10):
        stream.next_window()
        advanced = stream.report(0.0)  # a perfect model
        if advanced:
            break
    assert advanced and stream.length == 3 and stream.solved == 2
    for _ in range(10):
        stream.next_window()
        assert not stream.report(10.0)  # far above 0.15 bits per episode: stays at this level
    assert stream.length == 3


def test_copy_stream_resumes_exactly():
    a = CopyStream(batch_size=3, unroll=4, seed=5, start_length=4)
    for _ in range(7):
        a.next_window()
    b = CopyStream(batch_size=3, unroll=4, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        wa, wb = a.next_window(), b.next_window()
        assert torch.equal(wa[0], wb[0]) and torch.equal(wa[4], wb[4])


def test_random_phase_puts_boundaries_everywhere_and_counts_no_partial_episode():
    """Episodes of one length meet the window boundaries at one position per column; random phase spreads that
    position over the batch. The first, partial episode of a column counts nothing (its patterns were not all shown)."""
    length, unroll, batch = 3, 4, 64
    episode = 2 * length + 2
    stream = CopyStream(batch_size=batch, unroll=unroll, start_length=length, seed=0)
    x, _, _, _, mask = stream.next_window()
    offsets = set()
    for column in range(batch):
        symbols = x[:, column].tolist()
        if START in symbols:
            offsets.add((episode - symbols.index(START)) % episode)  # where in its episode the column started
        assert not mask[: symbols.index(START) if START in symbols else unroll, column].any()
    assert len(offsets) >= episode // 2  # not all columns in phase (aligned: one offset only)
    aligned = CopyStream(batch_size=batch, unroll=unroll, start_length=length, seed=0, phase="aligned")
    assert (aligned.next_window()[0][0] == START).all()
    # after the partial episode every column carries well-formed, counted episodes
    xs, ys, masks = stream_symbols(stream, 12)
    seq = [xs[0]] + ys
    first = seq.index(START)
    assert seq[first + 1 + length] == STOP and seq[first + 2 + length: first + 2 + 2 * length] == seq[first + 1: first + 1 + length]


def test_random_phase_counts_exactly_the_complete_episodes():
    """The curriculum's episode count equals, column by column, the episodes whose START and last output were both
    served: the partial episode a column starts in never counts, whatever its phase."""
    length, unroll, batch = 3, 4, 16
    stream = CopyStream(batch_size=batch, unroll=unroll, start_length=length, seed=7, window_episodes=10**9)
    columns = [[] for _ in range(batch)]
    for _ in range(25):
        x, y, _, _, _ = stream.next_window()
        stream.report(0.0)
        for column in range(batch):
            if not columns[column]:
                columns[column].append(int(x[0, column]))
            columns[column].extend(y[:, column].tolist())
    episode = 2 * length + 2
    expected = 0
    for seq in columns:
        starts = [i for i, s in enumerate(seq) if s == START]
        assert starts[0] < episode  # every column reaches its first full episode within one episode's length
        expected += sum(1 for i in starts if i + episode - 1 < len(seq))
    assert stream.episodes == expected > 0
