"""Sampler, seeded items, the recipes' crop and flip."""
import torch

from zoo.train.data import EpochSampler, Seeded, TrainTransform, flip_batch


def test_global_batches_do_not_depend_on_the_number_of_ranks():
    one = list(EpochSampler(22, 4, seed=3))
    ranks = [list(EpochSampler(22, 2, seed=3, rank=r, world=2)) for r in range(2)]
    assert len(one) == 20                                    # 5 global batches of 4, the tail dropped
    for k in range(5):
        assert sorted(one[4 * k:4 * k + 4]) == sorted(ranks[0][2 * k:2 * k + 2] + ranks[1][2 * k:2 * k + 2])
    s = EpochSampler(22, 4, seed=3)
    s.set_epoch(0, start=2)                                  # resuming after 2 batches
    assert list(s) == one[8:] and len(s) == 12
    s.set_epoch(1)
    assert list(s) != one                                    # a new order every epoch


def test_seeded_items_are_reproducible_and_leave_the_callers_rng_alone():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(2)

    d = Seeded(Noise(), seed=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = d[2]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(d[2], a) and not torch.equal(d[3], a)
    d.set_epoch(1)
    assert not torch.equal(d[2], a)


def test_multiscale_crop_and_centre_crop():
    frames = torch.randint(0, 256, (3, 3, 60, 80), dtype=torch.uint8)
    torch.manual_seed(0)
    tf = TrainTransform(32, crop="multiscale")
    out = tf(frames)
    assert out.shape == (3, 3, 32, 32)
    # every frame of the clip gets the same crop: equal input frames give equal output frames
    same = frames[:1].repeat(3, 1, 1, 1)
    y = tf(same)
    assert torch.equal(y[:, 0], y[:, 2])
    c = TrainTransform(32, crop="center")
    assert c(frames).shape == (3, 3, 32, 32)


def test_flip_swaps_the_mirrored_labels():
    x = torch.arange(2 * 3 * 1 * 1 * 4, dtype=torch.float).view(2, 3, 1, 1, 4)
    y = torch.tensor([86, 5])
    keys = next([a, b] for a in range(50) for b in range(50)
                if torch.rand((), generator=torch.Generator().manual_seed(a)) < 0.5
                and torch.rand((), generator=torch.Generator().manual_seed(b)) < 0.5)
    fx, fy = flip_batch(x, y, "swap", {86: 87, 87: 86}, keys)
    assert torch.equal(fx, x.flip(-1)) and fy.tolist() == [87, 5]
    fx, fy = flip_batch(x, y, True, {86: 87}, keys)
    assert fy.tolist() == [86, 5]
    assert flip_batch(x, y, False, {}, keys)[0] is x
