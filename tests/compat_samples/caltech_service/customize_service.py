# -*- coding: utf-8 -*-
import os

import mxnet as mx
import numpy as np
from PIL import Image
from mms.model_service.mxnet_model_service import MXNetBaseService

IMAGE_SIZE = 32


class CaltechService(MXNetBaseService):
    def __init__(self, model_name, model_path):
        self.model_name = model_name
        self.model_path = model_path
        sym, arg_params, aux_params = mx.model.load_checkpoint(os.path.join(model_path, 'resnet'), 0)
        self.mod = mx.mod.Module(symbol=sym, context=mx.cpu(), label_names=None)
        self.mod.bind(for_training=False, data_shapes=[('data', (1, 3, IMAGE_SIZE, IMAGE_SIZE))])
        self.mod.set_params(arg_params, aux_params, allow_missing=True)
        with open(os.path.join(model_path, 'labels.txt')) as f:
            self.labels = [l.strip() for l in f.readlines() if l.strip()]
        print 'model %s loaded with %d classes' % (model_name, len(self.labels))

    def _preprocess(self, data):
        preprocessed_data = {}
        for k, v in data.iteritems():
            for file_name, file_content in v.iteritems():
                img = Image.open(file_content).convert('RGB').resize((IMAGE_SIZE, IMAGE_SIZE))
                img = np.asarray(img, dtype=np.float32).transpose((2, 0, 1))
                preprocessed_data[k] = mx.nd.array(img[np.newaxis, :])
        return preprocessed_data

    def _inference(self, data):
        batch = data.values()[0]
        self.mod.forward(mx.io.DataBatch([batch]), is_train=False)
        return self.mod.get_outputs()[0].asnumpy()

    def _postprocess(self, data):
        prob = map(lambda row: row, data)[0]
        order = prob.argsort()[::-1][:5]
        scores = [[self.labels[i], round(float(prob[i]), 4)] for i in order]
        return {'predicted_label': scores[0][0], 'scores': scores}
