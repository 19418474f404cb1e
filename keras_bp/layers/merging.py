"""The merge layers: a list of tensors in, one tensor out, each merge with its backward.

Elementwise merges of inputs x_1 .. x_n, broadcast against each other to
the output's shape (batch, ...); `sum_to(g, x)` is broadcasting's backward,
g summed over the axes x was broadcast along (keras_bp.layers._broadcast):

    Add:       y = sum_i x_i                dL/dx_i = sum_to(dy, x_i)
    Subtract:  y = x_1 - x_2                dL/dx_1 = sum_to(dy, x_1),  dL/dx_2 = -sum_to(dy, x_2)
    Average:   y = (1/n) sum_i x_i          dL/dx_i = sum_to(dy / n, x_i)
    Multiply:  y = prod_i x_i               dL/dx_i = sum_to(dy * prod_{j != i} x_j, x_i)
    Maximum:   y = x_w, w = argmax_i x_i    dL/dx_i = sum_to(dy * [w == i], x_i)
    Minimum:   y = x_w, w = argmin_i x_i    (the same)

Maximum and Minimum fold the inputs left to right, y = max(max(x_1, x_2), x_3),
and TensorFlow's gradient of max(a, b) goes to a where a >= b (min: a <= b):
on a tie the gradient goes, whole, to the first of the tied inputs. The
forward keeps the index w of the input each output element came from, along
the same fold, and the backward routes dy there.

Masks, as Keras's merges treat them (a mask (batch, steps) covers
(batch, steps, features) inputs; read only where the ranks agree, as in
Keras): Multiply puts 1 where an input is masked out, and where every input
has a mask, 0 where all of them are masked out; so x_i's gradient is 0
where its mask is off. Maximum and Minimum let a masked-out input take the
value of the running result (a tie, so the gradient stays there) and a
masked-out running result take the input's value (w moves to the input).
Add, Subtract and Average ignore masks. The output mask is the OR of the
input masks (None unless every input has one).

A `tf.SparseTensor` among the inputs is merged as Keras does, by Keras's
own ops (sparse with sparse stays sparse, with dense gives dense): only
TensorFlow's gradients of those sparse ops run there, no manual backward.

Inputs of different ranks get ones inserted after the batch axis until the
ranks match (Keras's rule, by Reshape's manual op), so (batch, 4) merges
with (batch, 3, 4) as (batch, 1, 4).

Concatenate along axis a:  y = [x_1 | x_2 | ...]    dL/dx_i = the slice of dy that x_i fills.

Dot with axes (a, b): y[n, I, J] = sum_k x[n, I, k] z[n, k, J], where k is
x's axis a and z's axis b, I the other axes of x, J those of z (the batch
axis n shared); Keras gives rank-2 inputs the output (batch, 1).

    dL/dx[n, I, k] = sum_J dy[n, I, J] z[n, k, J]   (x's shape)
    dL/dz[n, k, J] = sum_I dy[n, I, J] x[n, I, k]   (z's shape)

With `normalize=True` each input is L2-normalized along its axis first, as
Keras's `ops.normalize` does: u = x r, r = min(rsqrt(s), 1/eps), s = sum_k x^2,
eps = keras.config.epsilon(). Where r is not clipped, dr/ds = -r^3 / 2, so

    dL/dx = r (du - u sum_k(du u))      (x's shape)

and where r is clipped (a norm below eps) dL/dx = du / eps.
"""

import functools
import string

import keras
import tensorflow as tf
from keras.src.backend import get_keras_mask
from keras.src.layers.merging.base_merge import Merge as _KerasMerge
from keras.src.layers.merging.dot import batch_dot as _keras_batch_dot
from keras.src.utils.numerical_utils import normalize as _keras_normalize

from keras_bp._validation import invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._broadcast import sum_to_shape
from keras_bp.layers.reshaping import _plain_reshape


def _keras_mask_of(x):
    """x's Keras mask broadcast to x's shape ((batch, steps) -> (batch, steps, features)), or None."""
    mask = get_keras_mask(x)
    return None if mask is None else tf.broadcast_to(tf.expand_dims(mask, -1), tf.shape(x))


# --- elementwise merges --------------------------------------------------------


def _sum_op(n, sign, divisor):
    """y = sum_i sign_i x_i / divisor: Add (signs +1, divisor 1), Subtract (+1, -1), Average (divisor n)."""

    def forward(*xs):
        y = xs[0] if sign[0] > 0 else -xs[0]
        for s, x in zip(sign[1:], xs[1:]):
            y = y + x if s > 0 else y - x
        if divisor != 1:
            y = y / divisor
        return y, [tf.shape(x) for x in xs]

    def backward(shapes, dy):
        if divisor != 1:
            dy = dy / divisor
        return [sum_to_shape(dy if s > 0 else -dy, shape) for s, shape in zip(sign, shapes)]

    return manual_gradient(forward, backward, name="merge_sum")


@functools.lru_cache(maxsize=None)
def _add_op(n):
    return _sum_op(n, (1,) * n, 1)


@functools.lru_cache(maxsize=None)
def _average_op(n):
    # NOTE: divided by n as Keras does (y / n), so integer inputs give the same float64 as Keras.
    return _sum_op(n, (1,) * n, n)


_subtract_op = _sum_op(2, (1, -1), 1)


@functools.lru_cache(maxsize=None)
def _multiply_op(n, has_output_mask):
    """y = prod_i x'_i, x'_i = where(m_i, x_i, 1); y = where(OR m_i, y, 0) where every input has a mask."""

    def forward(*inputs):
        xs, masks = inputs[:n], inputs[n:]
        factors = [x if m is None else tf.where(m, x, tf.ones((), x.dtype)) for x, m in zip(xs, masks)]
        y = functools.reduce(lambda a, b: a * b, factors)
        kept = None
        if has_output_mask:
            kept = functools.reduce(tf.logical_or, masks)
            y = tf.where(kept, y, tf.zeros((), y.dtype))
        return y, (factors, masks, kept)

    def backward(saved, dy):
        factors, masks, kept = saved
        if kept is not None:
            dy = tf.where(kept, dy, tf.zeros((), dy.dtype))
        grads = []
        for i, (x, m) in enumerate(zip(factors, masks)):
            # prod_{j != i} x'_j, without dividing by x'_i (which may be 0).
            others = functools.reduce(lambda a, b: a * b, [f for j, f in enumerate(factors) if j != i], dy)
            dx = others if m is None else tf.where(m, others, tf.zeros((), others.dtype))
            grads.append(sum_to_shape(dx, tf.shape(x)))
        return grads + [None] * n

    return manual_gradient(forward, backward, name="merge_multiply")


@functools.lru_cache(maxsize=None)
def _extremum_op(n, largest):
    """y = max (or min) of x_1 .. x_n folded left to right, and w, the index each element came from."""
    pick, first_wins = (tf.maximum, tf.greater_equal) if largest else (tf.minimum, tf.less_equal)

    def forward(*inputs):
        xs, masks = inputs[:n], inputs[n:]
        y, kept, w = xs[0], masks[0], tf.zeros((), tf.int32)
        for i in range(1, n):
            x, m, source = xs[i], masks[i], tf.constant(i)
            if m is not None:
                x, source = tf.where(m, x, y), tf.where(m, source, w)
            if kept is not None:
                y, w = tf.where(kept, y, x), tf.where(kept, w, source)
            kept = tf.logical_or(kept, m) if kept is not None and m is not None else None
            # TensorFlow's own gradient of max(y, x) goes to y where y >= x: the same w.
            w = tf.where(first_wins(y, x), w, source)
            y = pick(y, x)
        return y, (w, [tf.shape(x) for x in xs])

    def backward(saved, dy):
        w, shapes = saved
        w = tf.broadcast_to(w, tf.shape(dy))
        zeros = tf.zeros_like(dy)
        return [sum_to_shape(tf.where(w == i, dy, zeros), shape) for i, shape in enumerate(shapes)] + [None] * n

    return manual_gradient(forward, backward, name="merge_maximum" if largest else "merge_minimum")


class _Merge(keras.layers.Layer):
    """Keras's merge base: shape checks in `build`, ranks aligned in `call`, the OR of the masks."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _merge(self, inputs):
        raise NotImplementedError

    def _keras_merge(self, inputs):
        """The merge by Keras's ops (sparse inputs), TensorFlow's gradients."""
        return functools.reduce(self._keras_op, inputs)

    def build(self, input_shape):
        # Keras's checks and words (keras/src/layers/merging/base_merge.py).
        if not isinstance(input_shape[0], (tuple, list)):
            lead = (
                "A merge layer should be called on a list of inputs. "
                f"Received: input_shape={input_shape} (not a list of shapes)"
            )
            raise invalid("input_shape", input_shape, "a list of shapes", lead)
        batch_sizes = {s[0] for s in input_shape if s} - {None}
        if len(batch_sizes) > 1:
            lead = f"Cannot merge tensors with different batch sizes. Received tensors with shapes {input_shape}"
            raise invalid("input_shape", input_shape, "shapes with one batch size", lead)
        self.compute_output_shape(input_shape)  # raises for shapes that do not broadcast
        self._reshape_required = None in input_shape or len({len(s) for s in input_shape}) != 1

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            lead = f"A merge layer should be called on a list of inputs. Received: inputs={inputs} (not a list of tensors)"
            raise invalid("inputs", inputs, "a list of tensors", lead)
        inputs = list(inputs)
        if any(isinstance(x, tf.SparseTensor) for x in inputs):
            return self._keras_merge(inputs)
        if self._reshape_required:
            rank = max(len(x.shape) for x in inputs)
            inputs = [self._with_rank(x, rank) for x in inputs]
        return self._merge(inputs)

    @staticmethod
    def _with_rank(x, rank):
        """x with ones inserted after the batch axis up to `rank` (Keras's expand_dims at axis 1)."""
        missing = rank - len(x.shape)
        if missing == 0:
            return x
        shape = tf.shape(x)
        return _plain_reshape(x, tf.concat([shape[:1], tf.ones([missing], tf.int32), shape[1:]], 0))

    @staticmethod
    def _broadcast_shape(shape1, shape2):
        """Keras's `_compute_elemwise_op_output_shape`: the shapes aligned right, None where unknown."""
        if shape1 is None or shape2 is None:
            return None
        if len(shape1) < len(shape2):
            shape1, shape2 = shape2, shape1
        if not shape2:
            return tuple(shape1)
        output = list(shape1[: -len(shape2)])
        for i, j in zip(shape1[-len(shape2):], shape2):
            if i is None or j is None:
                output.append(None)
            elif i == 1 or j == 1:
                output.append(j if i == 1 else i)
            elif i != j:
                lead = f"Inputs have incompatible shapes. Received shapes {shape1} and {shape2}"
                raise invalid("input_shape", (shape1, shape2), "shapes that broadcast", lead)
            else:
                output.append(i)
        return tuple(output)

    def compute_output_shape(self, input_shape):
        output = None if input_shape[0] is None else tuple(input_shape[0][1:])
        for shape in input_shape[1:]:
            output = self._broadcast_shape(output, None if shape is None else tuple(shape[1:]))
        batch_sizes = {s[0] for s in input_shape if s is not None} - {None}
        return ((batch_sizes.pop() if len(batch_sizes) == 1 else None),) + output

    def compute_output_spec(self, inputs):
        # Keras's: sparse when every input is.
        shape = self.compute_output_shape([x.shape for x in inputs])
        return keras.KerasTensor(shape, dtype=self.compute_dtype, sparse=all(x.sparse for x in inputs))

    def _checked_masks(self, inputs, mask):
        """None, or the list of masks after Keras's checks on it."""
        if mask is None:
            return None
        if not isinstance(mask, (tuple, list)):
            raise invalid("mask", mask, "a list", lead=f"`mask` should be a list. Received: mask={mask}")
        if not isinstance(inputs, (tuple, list)):
            raise invalid("inputs", inputs, "a list", lead=f"`inputs` should be a list. Received: inputs={inputs}")
        if len(mask) != len(inputs):
            lead = (
                "The lists `inputs` and `mask` should have the same length. "
                f"Received: inputs={inputs} of length {len(inputs)}, and mask={mask} of length {len(mask)}"
            )
            raise invalid("mask", mask, f"a list of {len(inputs)} masks", lead)
        return list(mask)

    def compute_mask(self, inputs, mask=None):
        mask = self._checked_masks(inputs, mask)
        if mask is None or any(m is None for m in mask):
            return None
        # keras.ops: masks may be symbolic (KerasTensors) or of any dtype (cast to bool), as in Keras.
        return functools.reduce(keras.ops.logical_or, mask)


def _two_inputs(layer, name, value):
    """Raises unless `value` (the inputs, or their shapes) has 2 entries, in Keras's words."""
    if len(value) != 2:
        lead = f"A `{type(layer).__name__}` layer should be called on exactly 2 inputs. Received: {name}={value}"
        raise invalid(name, value, "a list of 2 " + ("shapes" if name == "input_shape" else "tensors"), lead)


@keras.saving.register_keras_serializable(package="keras_bp")
class Add(_Merge):
    """Adds a list of inputs elementwise (drop-in for `keras.layers.Add`).

    Input shape:
        A list of tensors that broadcast against each other.

    Output shape:
        Their broadcast shape.
    """

    _keras_op = staticmethod(keras.ops.add)

    def _merge(self, inputs):
        return _add_op(len(inputs))(*inputs)


@keras.saving.register_keras_serializable(package="keras_bp")
class Subtract(_Merge):
    """Subtracts the second input from the first (drop-in for `keras.layers.Subtract`).

    Input shape:
        A list of 2 tensors that broadcast against each other.

    Output shape:
        Their broadcast shape.
    """

    def build(self, input_shape):
        super().build(input_shape)
        _two_inputs(self, "input_shape", input_shape)

    _keras_op = staticmethod(keras.ops.subtract)

    def _merge(self, inputs):
        _two_inputs(self, "inputs", inputs)
        return _subtract_op(*inputs)


@keras.saving.register_keras_serializable(package="keras_bp")
class Average(_Merge):
    """Averages a list of inputs elementwise (drop-in for `keras.layers.Average`)."""

    _keras_op = staticmethod(keras.ops.add)

    def _keras_merge(self, inputs):
        return super()._keras_merge(inputs) / len(inputs)

    def _merge(self, inputs):
        return _average_op(len(inputs))(*inputs)


@keras.saving.register_keras_serializable(package="keras_bp")
class Multiply(_Merge):
    """Multiplies a list of inputs elementwise (drop-in for `keras.layers.Multiply`).

    A masked-out element of an input counts as 1; where every input has a
    mask, an element that all of them mask out is 0 (as in Keras).
    """

    _keras_op = staticmethod(keras.ops.multiply)

    def _merge(self, inputs):
        masks = [_keras_mask_of(x) for x in inputs]
        has_output_mask = all(m is not None for m in masks)
        return _multiply_op(len(inputs), has_output_mask)(*inputs, *masks)


class _Extremum(_Merge):
    _largest = True

    def _keras_merge(self, inputs):
        pick = keras.ops.maximum if self._largest else keras.ops.minimum
        return _KerasMerge._apply_merge_op_and_or_mask(self, pick, inputs)

    def _merge(self, inputs):
        masks = [_keras_mask_of(x) for x in inputs]
        return _extremum_op(len(inputs), self._largest)(*inputs, *masks)


@keras.saving.register_keras_serializable(package="keras_bp")
class Maximum(_Extremum):
    """The elementwise maximum of a list of inputs (drop-in for `keras.layers.Maximum`).

    On a tie the gradient goes to the first of the tied inputs, as
    TensorFlow's gradient of Keras's `maximum` does.
    """

    _largest = True


@keras.saving.register_keras_serializable(package="keras_bp")
class Minimum(_Extremum):
    """The elementwise minimum of a list of inputs (drop-in for `keras.layers.Minimum`).

    On a tie the gradient goes to the first of the tied inputs, as
    TensorFlow's gradient of Keras's `minimum` does.
    """

    _largest = False


# --- Concatenate ------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _concat_op(axis):
    """y = [x_1 | x_2 | ...] along `axis`; dL/dx_i = the slice of dy at x_i's place."""

    def forward(*xs):
        return tf.concat(xs, axis), tf.stack([tf.shape(x)[axis] for x in xs])

    def backward(sizes, dy):
        return tf.split(dy, sizes, axis=axis, num=None if sizes.shape[0] is None else sizes.shape[0])

    return manual_gradient(forward, backward, name="concatenate")


@keras.saving.register_keras_serializable(package="keras_bp")
class Concatenate(_Merge):
    """Concatenates a list of inputs along one axis (drop-in for `keras.layers.Concatenate`).

    Args:
        axis: Integer, the axis to concatenate along.

    Input shape:
        A list of tensors of one shape except along `axis`.

    Output shape:
        That shape, with the sizes along `axis` added.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self._reshape_required = False

    def build(self, input_shape):
        # Keras's check (keras/src/layers/merging/concatenate.py): the shapes
        # with the axis removed must agree, None matching any size.
        if len(input_shape) < 1 or not isinstance(input_shape[0], (tuple, list)):
            lead = f"A `Concatenate` layer should be called on a list of at least 1 input. Received: input_shape={input_shape}"
            raise invalid("input_shape", input_shape, "a list of shapes", lead)
        if all(shape is None for shape in input_shape):
            return
        reduced = [list(shape) for shape in input_shape]
        for shape in reduced:
            if len(shape) > self.axis:
                del shape[self.axis]
        reduced = {tuple(shape) for shape in reduced}
        if len(reduced) == 1:
            return
        lead = (
            "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
            f"Received: input_shape={input_shape}"
        )
        error = invalid("input_shape", input_shape, "shapes that agree except along axis", lead)
        ranks = {len(shape) for shape in reduced}
        if len(ranks) != 1:
            raise error
        for axis in range(ranks.pop()):
            if len({shape[axis] for shape in reduced if shape[axis] is not None}) > 1:
                raise error

    def call(self, inputs):
        if any(isinstance(x, tf.SparseTensor) for x in inputs):
            return keras.ops.concatenate(inputs, axis=self.axis)
        return _concat_op(self.axis)(*inputs)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or not isinstance(input_shape[0], (tuple, list)):
            lead = f"A `Concatenate` layer should be called on a list of inputs. Received: input_shape={input_shape}"
            raise invalid("input_shape", input_shape, "a list of shapes", lead)
        output = list(input_shape[0])
        for shape in input_shape[1:]:
            if output[self.axis] is None or shape[self.axis] is None:
                output[self.axis] = None
                break
            output[self.axis] += shape[self.axis]
        return tuple(output)

    def compute_mask(self, inputs, mask=None):
        mask = self._checked_masks(inputs, mask)
        if mask is None or all(m is None for m in mask):
            return None
        # Each mask shaped like its input (all True where an input has none), concatenated, then
        # reduced over the last axis, as Keras does.
        ops, full = keras.ops, []
        for x, m in zip(inputs, mask):
            if m is None:
                full.append(ops.ones_like(x, dtype="bool"))
            elif len(m.shape) < len(x.shape):
                full.append(ops.logical_or(ops.expand_dims(m, axis=-1), ops.zeros_like(x, dtype="bool")))
            else:
                full.append(m)
        return ops.any(ops.concatenate(full, axis=self.axis), axis=-1, keepdims=False)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


# --- Dot ----------------------------------------------------------------------------


def _l2_normalize(x, axis):
    """u = x r, r = min(rsqrt(sum_k x^2), 1/eps) (Keras's ops.normalize); returns u, r and where r is clipped."""
    inverse_eps = 1.0 / keras.config.epsilon()
    r = tf.math.rsqrt(tf.reduce_sum(tf.square(x), axis=axis, keepdims=True))
    clipped = r > inverse_eps  # TensorFlow's gradient of min(rsqrt, 1/eps) goes to rsqrt on a tie: so does ours
    r = tf.minimum(r, tf.cast(inverse_eps, x.dtype))
    return x * r, (r, clipped)


def _l2_normalize_backward(u, saved, du, axis):
    """dL/dx = r (du - u sum_k(du u)) where r is not clipped, r du where it is."""
    r, clipped = saved
    return tf.where(clipped, r * du, r * (du - u * tf.reduce_sum(du * u, axis=axis, keepdims=True)))


@functools.lru_cache(maxsize=None)
def _dot_op(x_rank, z_rank, x_axis, z_axis, normalize):
    """y[n, I, J] = sum_k x[n, I, k] z[n, k, J]; the einsum equations of the forward and both partials."""
    letters = iter(string.ascii_letters)
    batch, k = next(letters), next(letters)
    x_ix = [batch if a == 0 else k if a == x_axis else next(letters) for a in range(x_rank)]
    z_ix = [batch if a == 0 else k if a == z_axis else next(letters) for a in range(z_rank)]
    y_ix = [i for i in x_ix if i != k] + [i for i in z_ix[1:] if i != k]
    x_ix, z_ix, y_ix = "".join(x_ix), "".join(z_ix), "".join(y_ix)
    # Keras's batch_dot gives two rank-2 inputs the output (batch, 1).
    one_column = len(y_ix) == 1

    def forward(x, z):
        saved_x = saved_z = None
        if normalize:
            x, saved_x = _l2_normalize(x, x_axis)
            z, saved_z = _l2_normalize(z, z_axis)
        y = tf.einsum(f"{x_ix},{z_ix}->{y_ix}", x, z)
        if one_column:
            y = tf.expand_dims(y, -1)
        return y, (x, z, saved_x, saved_z)

    def backward(saved, dy):
        x, z, saved_x, saved_z = saved  # x and z normalized, where normalize is on
        if one_column:
            dy = tf.squeeze(dy, -1)
        dx = tf.einsum(f"{y_ix},{z_ix}->{x_ix}", dy, z)
        dz = tf.einsum(f"{y_ix},{x_ix}->{z_ix}", dy, x)
        if normalize:
            dx = _l2_normalize_backward(x, saved_x, dx, x_axis)
            dz = _l2_normalize_backward(z, saved_z, dz, z_axis)
        return dx, dz

    return manual_gradient(forward, backward, name="dot")


@keras.saving.register_keras_serializable(package="keras_bp")
class Dot(_Merge):
    """The dot product of two inputs along one axis of each (drop-in for `keras.layers.Dot`).

    Args:
        axes: Integer, or a tuple of 2 integers: the axis of each input to
            take the dot product along (never the batch axis 0).
        normalize: Whether to L2-normalize each input along its axis first
            (the output is then the cosine proximity).

    Input shape:
        A list of 2 tensors of rank >= 2, of one batch size, whose `axes`
        have one size.

    Output shape:
        The first input's shape without its axis, then the second's without
        its batch axis and its axis; `(batch_size, 1)` for two rank-2 inputs.
    """

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        accepted = "an integer or a tuple of 2 integers"
        if not isinstance(axes, int):
            if not isinstance(axes, (list, tuple)):
                lead = f"Invalid type for argument `axes`: it should be a list or an int. Received: axes={axes}"
                # Keras raises TypeError here.
                raise TypeError(str(invalid("axes", axes, accepted, lead)))
            if len(axes) != 2:
                lead = f"Invalid format for argument `axes`: it should contain two elements. Received: axes={axes}"
                raise invalid("axes", axes, accepted, lead)
            if not isinstance(axes[0], int) or not isinstance(axes[1], int):
                lead = f"Invalid format for argument `axes`: list elements should be integers. Received: axes={axes}"
                raise invalid("axes", axes, accepted, lead)
        self.axes = axes
        self.normalize = normalize
        self._reshape_required = False

    def _axes_for(self, rank1, rank2):
        """Both axes, non-negative (Keras's rule: an int's negative value counts from each input's end)."""
        if isinstance(self.axes, int):
            return [self.axes % rank1, self.axes % rank2] if self.axes < 0 else [self.axes] * 2
        return [a % r if a < 0 else a for a, r in zip(self.axes, (rank1, rank2))]

    def build(self, input_shape):
        if not isinstance(input_shape[0], (tuple, list)) or len(input_shape) != 2:
            lead = f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}"
            raise invalid("input_shape", input_shape, "a list of 2 shapes", lead)
        shape1, shape2 = input_shape
        if shape1 is None or shape2 is None:
            return
        axes = self._axes_for(len(shape1), len(shape2)) if isinstance(self.axes, int) else self.axes
        if shape1[axes[0]] != shape2[axes[1]]:
            lead = (
                f"Incompatible input shapes: axis values {shape1[axes[0]]} (at axis {axes[0]}) != "
                f"{shape2[axes[1]]} (at axis {axes[1]}). Full input shapes: {shape1}, {shape2}"
            )
            raise invalid("input_shape", input_shape, "shapes of one size along axes", lead)

    def call(self, inputs):
        _two_inputs(self, "inputs", inputs)
        x, z = inputs
        x_shape, z_shape = x.shape, z.shape
        x_axis, z_axis = self._axes_for(len(x_shape), len(z_shape))
        if isinstance(x, tf.SparseTensor) or isinstance(z, tf.SparseTensor):
            if self.normalize:
                x, z = _keras_normalize(x, axis=x_axis), _keras_normalize(z, axis=z_axis)
            return _keras_batch_dot(x, z, [x_axis, z_axis])
        # Keras's batch_dot checks, with its words.
        what = f"Received inputs with shapes {x_shape} and {z_shape}."
        if len(x_shape) < 2 or len(z_shape) < 2:
            raise invalid("inputs", (x_shape, z_shape), "tensors of rank >= 2",
                          lead=f"Cannot do batch_dot on inputs with rank < 2. {what}")
        if x_shape[0] is not None and z_shape[0] is not None and x_shape[0] != z_shape[0]:
            raise invalid("inputs", (x_shape, z_shape), "tensors of one batch size",
                          lead=f"Cannot do batch_dot on inputs with different batch sizes. {what}")
        if 0 in (x_axis, z_axis):
            lead = (
                "Cannot perform batch_dot over axis 0. If your inputs are not batched, add a dummy "
                "batch dimension to your inputs using keras.ops.expand_dims(x, 0)"
            )
            raise invalid("axes", self.axes, "axes other than the batch axis 0", lead)
        d1, d2 = x_shape[x_axis], z_shape[z_axis]
        if d1 is not None and d2 is not None and d1 != d2:
            lead = (
                f"Cannot do batch_dot on inputs with shapes {x_shape} and {z_shape} with axes={[x_axis, z_axis]}. "
                f"x.shape[{x_axis}] != y.shape[{z_axis}] ({d1} != {d2})."
            )
            raise invalid("inputs", (x_shape, z_shape), "tensors of one size along axes", lead)
        return _dot_op(len(x_shape), len(z_shape), x_axis, z_axis, bool(self.normalize))(x, z)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 2:
            lead = f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}"
            raise invalid("input_shape", input_shape, "a list of 2 shapes", lead)
        shape1, shape2 = list(input_shape[0]), list(input_shape[1])
        axes = self._axes_for(len(shape1), len(shape2)) if isinstance(self.axes, int) else self.axes
        shape1.pop(axes[0])
        shape2.pop(axes[1])
        shape2.pop(0)
        output = shape1 + shape2
        return tuple(output + [1] if len(output) == 1 else output)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}
