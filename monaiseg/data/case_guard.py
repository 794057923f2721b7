"""Per-case failures of batch inference, caught where the case is read: a dataset whose item is a failure
record when reading or preprocessing the case raises, and a collate function that keeps those records out of
the batch (`monaiseg.handlers.CaseFailures` logs, counts and writes them, and runs the other cases).

A failure record is `{"case": the input's path, "stage": "load", "reason": "<Error>: <innermost message>"}`;
the batch carries the records of its failed items under `FAILED_CASES` (a list, possibly the batch's only key).
With `fail_fast` the dataset raises as MONAI's `Dataset` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.data import Dataset, list_data_collate
from monai.transforms import Transform

from monaiseg.utils.config import as_bool

FAILED_CASES = "failed_cases"
FAILED_ITEM = "failed_case"


def failure_reason(exc: BaseException) -> str:
    """One line: the first error of `exc`'s chain that is not MONAI's "applying transform ..." wrapper, as
    "<ErrorType>: <message>" (our errors name the file and the problem)."""
    inner = exc
    while str(inner).startswith("applying transform") and (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    message = " ".join(str(inner).split())
    return f"{type(inner).__name__}: {message}" if message else type(inner).__name__


def case_name(item: Any, key: str = "image") -> str:
    """The input a datalist item names (its `key` value), else the item itself as text."""
    return str(item.get(key, item)) if isinstance(item, Mapping) else str(item)


class CaseDataset(Dataset):
    """MONAI `Dataset` whose item is `{FAILED_ITEM: record}` when reading or transforming it raises (record: see
    the module), unless `fail_fast` (true / "true"), which raises. `image_key` names the case in the record."""

    def __init__(
        self,
        data: Sequence,
        transform: Sequence[Callable] | Callable | None = None,
        fail_fast: bool | str = False,
        image_key: str = "image",
    ):
        super().__init__(data, transform)
        self.fail_fast, self.image_key = as_bool(fail_fast, "fail_fast"), image_key

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as exc:
            if self.fail_fast:
                raise
            record = {"case": case_name(self.data[index], self.image_key), "stage": "load"}
            return {FAILED_ITEM: {**record, "reason": failure_reason(exc)}}


def is_failed(item: Any) -> bool:
    """Whether a dataset item is a `CaseDataset` failure record."""
    return isinstance(item, Mapping) and FAILED_ITEM in item


def collate_cases(collate_fn: Callable | Transform | None = None) -> Callable[[Sequence], Any]:
    """A collate function: `collate_fn` (MONAI's `list_data_collate` by default) of the items that were read,
    their failure records under `FAILED_CASES` (a dict batch `{FAILED_CASES: [...]}` when none was read)."""
    collate = collate_fn or list_data_collate

    def collate_with_failures(items: Sequence) -> Any:
        failed = [item[FAILED_ITEM] for item in items if is_failed(item)]
        good = [item for item in items if not is_failed(item)]
        if not good:
            return {FAILED_CASES: failed}
        batch = collate(good)
        if failed:
            if not isinstance(batch, dict):
                raise TypeError(f"cannot attach failure records to a batch of type {type(batch).__name__}")
            batch[FAILED_CASES] = failed
        return batch

    return collate_with_failures
