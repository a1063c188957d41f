"""Exact interventional TreeSHAP for LightGBM boosters, categorical splits included (numba).

shap 0.51's interventional TreeExplainer compares every split as ``x <= threshold``; it encodes LightGBM's
categorical splits (``x in {a, b}``) as a bitset number, so its values are wrong for a model with categorical
features (checked: its own parsed trees disagree with LightGBM by 0.05 on our model). This module computes the
same quantity exactly: for a row x and a background row r, the Shapley values of v(S) = f(x_S, r_rest). For one
tree, each leaf reached by a hybrid path — every split follows x or r, a feature taking the same side all along —
with features A taken from x and B from r contributes value·(|A|−1)!|B|!/(|A|+|B|)! to each feature of A and
−value·|A|!(|B|−1)!/(|A|+|B|)! to each of B; a leaf with A = ∅ is f(r). Averaged over the background rows this is
``shap.TreeExplainer(feature_perturbation="interventional")`` on models without categorical splits (tested).
Split semantics follow LightGBM (missing types None/Zero/NaN, default_left; categorical: NaN, negative or
unseen → right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_MAX_DEPTH = 128


@dataclass(frozen=True)
class FlatTrees:
    """All trees of a booster as flat node arrays (node ids are global; ``roots`` index each tree's root)."""

    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray  # -1 for a leaf
    threshold: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    cat_start: np.ndarray  # -1 for a numeric split; else offset of the membership mask in ``cat_mask``
    cat_size: np.ndarray
    cat_mask: np.ndarray
    value: np.ndarray
    num_features: int


def flatten(booster: lgb.Booster) -> FlatTrees:
    """Flatten ``booster``'s trees (from ``dump_model``) into arrays."""
    dump = booster.dump_model()
    nodes: list[dict] = []
    masks: list[np.ndarray] = []
    roots = []

    def visit(node: dict) -> int:
        index = len(nodes)
        entry = {"node": node, "left": -1, "right": -1}
        nodes.append(entry)
        if "split_index" in node:
            entry["left"] = visit(node["left_child"])
            entry["right"] = visit(node["right_child"])
        return index

    for tree in dump["tree_info"]:
        roots.append(visit(tree["tree_structure"]))
    n = len(nodes)
    flat = {k: np.full(n, -1, dtype=np.int64) for k in ("left", "right", "feature", "cat_start", "cat_size")}
    threshold, value = np.zeros(n), np.zeros(n)
    default_left, missing = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.int64)
    offset = 0
    for i, entry in enumerate(nodes):
        node = entry["node"]
        flat["left"][i], flat["right"][i] = entry["left"], entry["right"]
        if "split_index" not in node:
            value[i] = node.get("leaf_value", 0.0)
            continue
        flat["feature"][i] = node["split_feature"]
        default_left[i] = node["default_left"]
        missing[i] = _MISSING[node["missing_type"]]
        if node["decision_type"] == "==":
            categories = np.array([int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64)
            mask = np.zeros(int(categories.max()) + 1, dtype=np.bool_)
            mask[categories] = True
            masks.append(mask)
            flat["cat_start"][i], flat["cat_size"][i] = offset, mask.size
            offset += mask.size
        else:
            threshold[i] = float(node["threshold"])
    cat_mask = np.concatenate(masks) if masks else np.zeros(1, dtype=np.bool_)
    return FlatTrees(
        np.asarray(roots, dtype=np.int64), flat["left"], flat["right"], flat["feature"], threshold, default_left,
        missing, flat["cat_start"], flat["cat_size"], cat_mask, value, dump["max_feature_idx"] + 1,
    )  # fmt: skip


@numba.njit(cache=True)
def _goes_left(t, node, x):
    value = x[t[3][node]]
    if t[7][node] >= 0:  # categorical
        if np.isnan(value):  # LightGBM: missing and negative categories go right
            return False
        code = int(value)
        if code < 0 or code >= t[8][node]:
            return False
        return t[9][t[7][node] + code]
    if np.isnan(value):
        if t[6][node] == 2:
            return t[5][node]
        value = 0.0
    if t[6][node] == 1 and abs(value) <= 1e-35:
        return t[5][node]
    return value <= t[4][node]


@numba.njit(cache=True)
def _predict_rows(t, X):
    out = np.zeros(X.shape[0])
    for i in range(X.shape[0]):
        for root in t[0]:
            node = root
            while t[3][node] >= 0:
                node = t[1][node] if _goes_left(t, node, X[i]) else t[2][node]
            out[i] += t[10][node]
    return out


@numba.njit(cache=True, parallel=True)
def _shap(t, X, R, w_pos, w_neg, num_features):
    n, m, nodes = X.shape[0], R.shape[0], t[1].shape[0]
    out = np.zeros((n, num_features + 1))
    r_left = np.zeros((m, nodes), dtype=np.bool_)
    for j in range(m):
        for node in range(nodes):
            if t[3][node] >= 0:
                r_left[j, node] = _goes_left(t, node, R[j])
    for i in numba.prange(n):
        x_left = np.zeros(nodes, dtype=np.bool_)
        for node in range(nodes):
            if t[3][node] >= 0:
                x_left[node] = _goes_left(t, node, X[i])
        state = np.zeros(num_features, dtype=np.int64)  # 0 unset, 1 from x, 2 from r
        path = np.zeros(_MAX_DEPTH, dtype=np.int64)
        s_node = np.zeros(2 * _MAX_DEPTH, dtype=np.int64)
        s_len = np.zeros(2 * _MAX_DEPTH, dtype=np.int64)
        s_feat = np.zeros(2 * _MAX_DEPTH, dtype=np.int64)
        s_state = np.zeros(2 * _MAX_DEPTH, dtype=np.int64)
        row = out[i]
        for j in range(m):
            for root in t[0]:
                top, length, a, b = 0, 0, 0, 0
                s_node[0], s_len[0], s_feat[0] = root, 0, -1
                top = 1
                while top > 0:
                    top -= 1
                    node = s_node[top]
                    while length > s_len[top]:  # undo the assignments of the branch just finished
                        length -= 1
                        f = path[length]
                        if state[f] == 1:
                            a -= 1
                        else:
                            b -= 1
                        state[f] = 0
                    if s_feat[top] >= 0:
                        f = s_feat[top]
                        state[f] = s_state[top]
                        path[length] = f
                        length += 1
                        if state[f] == 1:
                            a += 1
                        else:
                            b += 1
                    f = t[3][node]
                    if f < 0:  # leaf
                        v = t[10][node]
                        if a == 0:
                            row[num_features] += v
                        for k in range(length):
                            g = path[k]
                            if state[g] == 1:
                                row[g] += v * w_pos[a, b]
                            else:
                                row[g] -= v * w_neg[a, b]
                        continue
                    xl, rl = x_left[node], r_left[j, node]
                    x_child = t[1][node] if xl else t[2][node]
                    r_child = t[1][node] if rl else t[2][node]
                    if state[f] == 1 or xl == rl:
                        s_node[top], s_len[top], s_feat[top] = x_child, length, -1
                        top += 1
                    elif state[f] == 2:
                        s_node[top], s_len[top], s_feat[top] = r_child, length, -1
                        top += 1
                    else:
                        s_node[top], s_len[top], s_feat[top], s_state[top] = x_child, length, f, 1
                        s_node[top + 1], s_len[top + 1], s_feat[top + 1], s_state[top + 1] = r_child, length, f, 2
                        top += 2
                for k in range(length):  # reset before the next tree
                    state[path[k]] = 0
        for k in range(num_features + 1):
            row[k] /= m
    return out


def _weights() -> tuple[np.ndarray, np.ndarray]:
    size = _MAX_DEPTH + 1
    w_pos, w_neg = np.zeros((size, size)), np.zeros((size, size))
    for a in range(size):
        for b in range(size):
            if a + b == 0 or a + b > 160:
                continue
            total = math.lgamma(a + b + 1)
            if a > 0:
                w_pos[a, b] = math.exp(math.lgamma(a) + math.lgamma(b + 1) - total)
            if b > 0:
                w_neg[a, b] = math.exp(math.lgamma(a + 1) + math.lgamma(b) - total)
    return w_pos, w_neg


def _arrays(trees: FlatTrees) -> tuple:
    return (
        trees.roots, trees.left, trees.right, trees.feature, trees.threshold, trees.default_left, trees.missing,
        trees.cat_start, trees.cat_size, trees.cat_mask, trees.value,
    )  # fmt: skip


def predict_raw(trees: FlatTrees, X: np.ndarray) -> np.ndarray:
    """Raw score of every row by walking the flat trees (equals ``booster.predict(X, raw_score=True)``)."""
    return _predict_rows(_arrays(trees), np.ascontiguousarray(X, dtype=np.float64))


def interventional_shap(trees: FlatTrees, X: np.ndarray, background: np.ndarray) -> np.ndarray:
    """SHAP values (n, features + 1) of the raw score against ``background``; last column = mean f(background).

    Rows sum to the raw score of ``X`` (local accuracy).
    """
    w_pos, w_neg = _weights()
    X = np.ascontiguousarray(X, dtype=np.float64)
    background = np.ascontiguousarray(background, dtype=np.float64)
    return _shap(_arrays(trees), X, background, w_pos, w_neg, trees.num_features)
