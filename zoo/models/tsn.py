"""TSN and TSM baselines: the plain video ResNet, and the same with TSM's residual shift.

TSN (Wang et al., ECCV 2016) treats a clip as a batch of frames and averages the per-frame
scores; TSM (Lin et al., ICCV 2019) adds a parameter-free shift of 1/8 of the channels
towards t+1 and 1/8 towards t-1 on each block's residual branch ("blockres").

Both take ``calibrator=<name>``: a calibrator kind from zoo.models.calibrators (e.g. the
comparators "se3d", "s3d_g", "nln") placed where that kind belongs, as in the papers' ablations."""
from ..registration import register_arch
from .calibrators import calibrator_slots
from .resnet import Slots, VideoResNet
from .temporal import shift_slot


def _tsn(depth):
    def build(num_classes, num_frames, dropout=0.5, calibrator=None):
        return VideoResNet(depth, num_classes, Slots(**calibrator_slots(calibrator)), dropout=dropout,
                           num_frames=num_frames)
    build.__doc__ = f"""TSN with a ResNet-{depth} backbone: frames as a batch, average consensus;
    ``calibrator`` names an optional calibrator kind in every block (None: plain TSN)."""
    return build


def _tsm(depth):
    def build(num_classes, num_frames, dropout=0.5, shift_div=8, calibrator=None):
        slots = Slots(shift=shift_slot(shift_div), **calibrator_slots(calibrator))
        return VideoResNet(depth, num_classes, slots, dropout=dropout, num_frames=num_frames)
    build.__doc__ = f"""TSM with a ResNet-{depth} backbone: residual temporal shift of 1/shift_div
    of the channels each way in every block, average consensus; ``calibrator`` names an
    optional calibrator kind (None: plain TSM)."""
    return build


def _check(calibrator=None, shift_div=8, **_):
    calibrator_slots(calibrator)
    if isinstance(shift_div, bool) or not isinstance(shift_div, int) or shift_div < 1:
        raise ValueError(f"shift_div must be a positive integer (1/shift_div of the channels shift each way), "
                         f"got {shift_div!r}")


for _d in (18, 34, 50, 101):
    register_arch(f"tsn_r{_d}", family="tsn", check=_check)(_tsn(_d))
    register_arch(f"tsm_r{_d}", family="tsm", check=_check)(_tsm(_d))
