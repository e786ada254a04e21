# -*- coding: utf-8 -*-
# A customize_service.py in the style of ModelArts' Python 2.7 MXNet runtime, NOT written for
# this project: the legacy constructor, the manifest's Signature, raw bytes to _preprocess,
# print statements, xrange, iteritems and map(...)[0]. config.json says runtime python2.7.
import os

import mxnet as mx
import numpy as np
from mms.log import get_logger
from mms.model_service.mxnet_model_service import MXNetBaseService
from mms.utils.mxnet import image, ndarray

logger = get_logger()


class CaltechService(MXNetBaseService):
    def __init__(self, model_name, model_dir, manifest, gpu=None):
        super(CaltechService, self).__init__(model_name, model_dir, manifest, gpu)
        signature = manifest['Model']['Signature']
        self.data_name = signature['inputs'][0]['data_name']
        self.shape = signature['inputs'][0]['data_shape']
        with open(os.path.join(model_dir, 'labels.txt')) as f:
            self.labels = [line.strip() for line in f.readlines() if line.strip()]
        print "loaded %d labels for %s" % (len(self.labels), model_name)

    def _preprocess(self, data):
        img_list = []
        for idx in xrange(len(data)):
            img = image.read(data[idx])
            img = image.resize(img, self.shape[3], self.shape[2])
            img_list.append(image.transform_shape(img))
        return map(lambda x: x, img_list)

    def _inference(self, data):
        batch = mx.nd.concat(*data, dim=0).astype('float32')
        self.mx_model.forward(mx.io.DataBatch([batch]), is_train=False)
        return self.mx_model.get_outputs()[0]

    def _postprocess(self, data):
        probs = map(lambda row: row, data.asnumpy())[0]
        scores = dict((self.labels[i], float(p)) for i, p in enumerate(probs))
        ranked = sorted(scores.iteritems(), key=lambda kv: -kv[1])[:5]
        logger.info('predicted %s', ranked[0][0])
        return {'predicted_label': ranked[0][0], 'scores': [[k, v] for k, v in ranked]}
