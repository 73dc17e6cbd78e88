"""ONNX Runtime on the cached ONNX export of a weights file (the default on a CPU)."""

from __future__ import annotations

from collections.abc import Callable

from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.fnet import FNet
from fnet_deploy.model.weights import WeightsInfo


class CachedOnnxRunner(OnnxRunner):
    """An :class:`OnnxRunner` (CPU provider) of the deploy form of ``model``, exported into the
    cache (:func:`fnet_deploy.export.onnx_cache.cached_onnx`) when it activates, if it is not
    there yet: choosing this runner costs nothing, so bad inputs are refused before any export.

    Needs onnx, onnxscript and onnxruntime (checked by the caller).

    Args:
        model: the FNet loaded from ``info.path`` (training form); not modified.
        info: what the weights file says about itself (its sha256 keys the cache).
        notify: told in one line when an export starts.
    """

    def __init__(
        self, model: FNet, info: WeightsInfo, notify: Callable[[str], None] | None = None
    ) -> None:
        require("onnx")
        from fnet_deploy.export.onnx_cache import cached_path

        super().__init__(cached_path(info.sha256), "cpu")
        self.trained = model
        self.info = info
        self.notify = notify

    def _activate(self) -> None:
        from fnet_deploy.export.onnx_cache import cached_onnx

        try:
            self.model_path = cached_onnx(self.trained, self.info, notify=self.notify)
        except FnetError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise FnetError(
                f"{self.info.path}: exporting to ONNX for ONNX Runtime failed ({first})"
            ) from None
        super()._activate()
