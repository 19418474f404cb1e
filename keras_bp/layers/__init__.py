"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.activation import ELU, Activation, LeakyReLU, PReLU, ReLU, Softmax
from keras_bp.layers.additive_attention import AdditiveAttention
from keras_bp.layers.attention import Attention
from keras_bp.layers.conv import Conv1D, Conv2D, Conv3D
from keras_bp.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from keras_bp.layers.dense import Dense
from keras_bp.layers.depthwise_conv import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from keras_bp.layers.einsum_dense import EinsumDense
from keras_bp.layers.dropout import Dropout, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from keras_bp.layers.embedding import Embedding
from keras_bp.layers.group_normalization import GroupNormalization
from keras_bp.layers.multi_head_attention import MultiHeadAttention
from keras_bp.layers.merging import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from keras_bp.layers.noise import GaussianDropout, GaussianNoise
from keras_bp.layers.normalization import BatchNormalization, LayerNormalization
from keras_bp.layers.padding import Cropping1D, Cropping2D, Cropping3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D
from keras_bp.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from keras_bp.layers.preprocessing_normalization import Normalization
from keras_bp.layers.recurrent import GRU, LSTM, SimpleRNN
from keras_bp.layers.repeat_vector import RepeatVector
from keras_bp.layers.rescaling import Rescaling
from keras_bp.layers.reshaping import Flatten, Permute, Reshape
from keras_bp.layers.unit_normalization import UnitNormalization
from keras_bp.layers.upsampling import UpSampling1D, UpSampling2D, UpSampling3D

__all__ = [
    "Activation",
    "Add",
    "AdditiveAttention",
    "Attention",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Concatenate",
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Conv3DTranspose",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dense",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Dot",
    "Dropout",
    "ELU",
    "EinsumDense",
    "Embedding",
    "Flatten",
    "GRU",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GroupNormalization",
    "LSTM",
    "LayerNormalization",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "MultiHeadAttention",
    "Multiply",
    "Normalization",
    "PReLU",
    "Permute",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "SeparableConv1D",
    "SeparableConv2D",
    "SimpleRNN",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Subtract",
    "UnitNormalization",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]
