"""Helpers MMS legacy offered to custom services (``mms.utils.mxnet``)."""
