import os

import mxnet as mx
import numpy as np
from PIL import Image
from mms.model_service.mxnet_model_service import MXNetBaseService


class MnistService(MXNetBaseService):
    def __init__(self, model_name, model_path):
        super(MnistService, self).__init__(model_name, model_path)
        symbol_file = [f for f in os.listdir(model_path) if f.endswith('-symbol.json')][0]
        params_file = [f for f in os.listdir(model_path) if f.endswith('.params')][0]
        self.net = mx.gluon.SymbolBlock.imports(os.path.join(model_path, symbol_file), ['data'],
                                                os.path.join(model_path, params_file), ctx=mx.cpu())

    def _preprocess(self, data):
        images = []
        for k, v in data.items():
            for file_name, file_content in v.items():
                image = Image.open(file_content).convert('L').resize((28, 28))
                images.append(np.array(image, dtype=np.float32)[np.newaxis, np.newaxis, :, :] / 255.0)
        return mx.nd.array(np.concatenate(images))

    def _inference(self, data):
        return mx.nd.softmax(self.net(data)).asnumpy()[0]

    def _postprocess(self, data):
        top = np.argsort(data)[::-1][:3]
        return [{'class': str(int(i)), 'probability': float(data[i])} for i in top]
