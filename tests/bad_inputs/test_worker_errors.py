"""A user error raised in a data-loader worker reaches the main process as the same one line."""

import pytest
from torch.utils.data import DataLoader, Dataset

from engine_lib.utils.errors import ConfigError, UnknownNameError


class _Failing(Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [ConfigError("Cannot read image file 'a.png': image file is truncated"), UnknownNameError("x")],
)
def test_worker_user_error_keeps_its_type_and_one_line_message(error):
    loader = DataLoader(_Failing(error), batch_size=2, num_workers=1)
    with pytest.raises(type(error)) as info:
        next(iter(loader))
    assert str(info.value) == str(error)


def test_other_errors_keep_torchs_worker_traceback():
    loader = DataLoader(_Failing(ValueError("a bug")), batch_size=2, num_workers=1)
    with pytest.raises(ValueError, match="DataLoader worker process 0"):
        next(iter(loader))
