"""``mms.utils.mxnet.image`` and ``mms.utils.mxnet.ndarray``, as in MMS 0.4 / 1.x."""
