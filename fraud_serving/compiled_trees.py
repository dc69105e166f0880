"""Gradient-boosted trees compiled to flat arrays: margin and exact TreeSHAP in microseconds.

Why: scoring one transaction through XGBoost costs ~0.2 ms of per-call overhead and its exact
TreeSHAP (``pred_contribs``) ~0.3-1 ms per row, which alone spends the API's latency budget.
Here the booster's trees become NumPy arrays once, at load, and Numba kernels walk them:

- ``margin``: the raw log-odds, tree by tree (the same splits, the same float32 inputs as XGBoost);
- ``contributions``: exact path-dependent TreeSHAP (the algorithm of ``pred_contribs``, weighted
  by the nodes' hessian cover) computed the "Fast TreeSHAP v2" way (Yang, 2021): for every leaf
  the Shapley values of all ``2^k`` agree/disagree patterns of its ``k`` path features are
  tabulated at load, so a row costs one pass over the leaves' paths instead of the
  ``O(leaves * depth^2)`` recursion per tree; the same pass names the leaf each tree sends the
  row to, so ``explain`` gets the margin too, summed exactly as ``margin`` sums it;
- ``approximate``: Saabas path attribution (XGBoost's ``approx_contribs``), one walk per tree.

`compile_booster` verifies the result against XGBoost's own ``predict``, ``pred_contribs`` and
``approx_contribs`` on
probe rows (`compile_lightgbm` against LightGBM's ``raw_score`` and ``pred_contrib``) and
returns None when they disagree or the model is out of scope (categorical splits, DART,
multi-output, tables too large); callers then keep using the library.

Every kernel runs on the calling thread. The API serves with one process per core, so a kernel
spreading a request over Numba's threads competes with the other workers' requests; on the
shared 2-core VM (load ~5) a 1,000-row batch's exact TreeSHAP took 13.4 ms of wall time at best
on two threads against 6.3 on one (33.7 against 12.9 ms at the median), its CPU time doubled, and
OpenMP's threads, spinning after each parallel region, took CPU from the stages after it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numba
import numpy as np

GROUP_BITS = 6  # decisions per table: 2^6 patterns; depth-4 trees become 4 groups of 5
TABLE_BLOCK_ROWS = 512  # rows a block of the table pass (a depth-5 tree: 63 x 512 bytes of decisions)
TABLE_MARGIN_ROWS = 64  # from this many rows the margin comes from the table pass (fewer: tree walks)
MAX_TABLE_ENTRIES = 16_000_000  # 64 MB of float32; deeper/wider ensembles keep the library path
_TOLERANCE = 1e-4  # XGBoost computes in float32
LIGHTGBM_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (1e-35f): smaller |x| read as 0


def logistic(margin: np.ndarray) -> np.ndarray:
    """Log-odds to probability (what XGBoost's binary:logistic applies to the margin)."""
    return 1.0 / (1.0 + np.exp(-margin))


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledTrees:
    """One binary-classification tree ensemble as flat arrays (all trees' nodes concatenated)."""

    n_features: int
    base_margin: float
    expected_value: float  # the TreeSHAP bias: base margin + each tree's cover-weighted mean leaf
    roots: np.ndarray  # int32 (n_trees,)
    feature: np.ndarray  # int32 (n_nodes,), -1 on leaves
    threshold: np.ndarray  # float32 (XGBoost's own), the split goes left when x < threshold
    left: np.ndarray  # int32, -1 on leaves; a right child is always its left sibling + 1
    default_left: np.ndarray  # uint8: where a missing (NaN) value goes
    value: np.ndarray  # float64 leaf values (0 on internal nodes)
    tree_nodes: np.ndarray  # int32 (n_trees + 1,): tree t owns nodes tree_nodes[t]:tree_nodes[t + 1]
    # TreeSHAP: each tree is cut into groups (a subtree plus the path above it) of at most
    # GROUP_BITS decisions; a group's table holds the summed Shapley values of its leaves for
    # every combination of those decisions (ragged arrays addressed by offsets).
    tree_groups: np.ndarray  # int32 (n_trees + 1,): tree t owns groups tree_groups[t]:...
    group_offset: np.ndarray  # int32 (n_groups + 1,) into position_node / position_flip
    position_node: np.ndarray  # int32: the decision nodes of each group
    position_flip: np.ndarray  # uint8: bit = goes_left XOR flip
    slot_offset: np.ndarray  # int32 (n_groups + 1,) into slot_feature
    slot_feature: np.ndarray  # int32: the distinct features of each group
    table_offset: np.ndarray  # int32 (n_groups,) into table
    table: np.ndarray  # float32: per group, its features x 2^bits patterns (a feature's row contiguous)
    # The value of the leaf a pattern leads to inside its group's subtree (0.0 where the row
    # does not enter it), so the TreeSHAP pass also sums the margin, tree by tree.
    pattern_offset: np.ndarray  # int32 (n_groups + 1,) into pattern_value
    pattern_value: np.ndarray  # float64: per group, 2^bits leaf values
    # Saabas path attribution ("approx"): each node's cover-weighted mean leaf value (XGBoost's
    # FillNodeMeanValues); a split passed credits its feature with child mean - node mean.
    node_mean: np.ndarray  # float64 (n_nodes,)
    zero_below: float = 0.0  # |x| <= this counts as 0 (LightGBM drops such values from a row)

    def max_depth(self) -> int:
        """The deepest leaf's number of decisions (what exact reasons' cost grows with)."""
        depth = np.zeros(len(self.feature), dtype=np.int32)
        for node in np.flatnonzero(self.feature >= 0):  # a node's children come after it
            depth[self.left[node]] = depth[self.left[node] + 1] = depth[node] + 1
        return int(depth.max(initial=0))

    def _prepare(self, x: np.ndarray, features_as_rows: bool = False) -> np.ndarray:
        """Rows as the trees compare them: float32 like XGBoost (its thresholds are float32);
        ``features_as_rows``: transposed (the table pass reads a feature's values contiguously),
        in the same copy."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (n, {self.n_features}), got {x.shape}")
        x = np.ascontiguousarray(x.T if features_as_rows else x, dtype=self.threshold.dtype)
        if self.zero_below:
            x = np.where(np.abs(x) <= self.zero_below, 0.0, x)
        return x

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw log-odds per row (XGBoost's ``output_margin``): each row walks every tree; from
        `TABLE_MARGIN_ROWS` rows on, the table pass without its contributions (the same leaves
        summed in the same order, so the same bits: 1.4 against 4.3 ms for 1,000 rows of a
        200-tree depth-5 model, one thread)."""
        if len(x) >= TABLE_MARGIN_ROWS:
            return self._table_pass(x, with_contributions=False)[0]
        x = self._prepare(x)
        return _margin(
            x, self.roots, self.feature, self.threshold, self.left, self.default_left, self.value,
            self.base_margin,
        )  # fmt: skip

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated fraud probability: the logistic of the margin."""
        return logistic(self.margin(x))

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(margin, contributions)`` from one pass over the TreeSHAP tables.

        The margin is not ``expected_value + contributions.sum(axis=1)``: that sum of float32
        table entries is off by ~1e-7 and depends on the summation order. The pass takes every
        tree's leaf from the same decisions and adds the leaf values (float64) tree by tree from
        the base margin, as ``margin`` and ``approximate`` do: the three are bit-identical, so a
        transaction's probability does not depend on which reasons were asked for."""
        return self._tree_shap(x)

    def approximate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(margin, Saabas contributions)`` from one walk per tree: each split on a row's path
        credits its feature with the change of the node mean (= XGBoost's ``approx_contribs``,
        bias dropped). O(depth) per tree, where exact TreeSHAP visits every leaf."""
        x = self._prepare(x)
        margin, contributions = _saabas(
            x, self.roots, self.feature, self.threshold, self.left, self.default_left, self.value,
            self.node_mean, self.base_margin,
        )  # fmt: skip
        return margin, contributions

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP values (n, n_features) on the margin, bias dropped (= ``pred_contribs[:, :-1]``)."""
        return self._tree_shap(x)[1]

    def _tree_shap(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(x) >= 6:
            return self._table_pass(x, with_contributions=True)
        x = self._prepare(x)  # a few rows: each group's decisions straight from the row
        return _few_rows_contributions(
            x, self.feature, self.threshold, self.default_left, self.group_offset, self.position_node,
            self.position_flip, self.slot_offset, self.slot_feature, self.table_offset, self.table,
            self.pattern_offset, self.pattern_value, self.base_margin,
        )  # fmt: skip

    def _table_pass(self, x: np.ndarray, with_contributions: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(margin, contributions or None)`` from blocks of rows: a tree's decisions for a block
        at once, then each group's pattern, margin and table values (see `_table_block`)."""
        xt = self._prepare(x, features_as_rows=True)
        block = max(1, min(xt.shape[1], TABLE_BLOCK_ROWS))
        # a block's decisions and patterns: a byte each, unless a group has more than 8 decisions
        wide = np.diff(self.group_offset).max(initial=0) > 8  # (deep trees' paths)
        margin, out = _table_pass(
            xt, np.zeros(block, np.int32 if wide else np.uint8), with_contributions, self.tree_nodes,
            self.tree_groups, self.feature, self.threshold, self.default_left, self.group_offset,
            self.position_node, self.position_flip, self.slot_offset, self.slot_feature, self.table_offset,
            self.table, self.pattern_offset, self.pattern_value, self.base_margin,
        )  # fmt: skip
        return margin, (out.T if with_contributions else None)


# --- kernels -------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _goes_left(v: float, threshold: float, default_left: int) -> bool:
    if v != v:  # NaN: the learned default direction
        return default_left == 1
    return v < threshold


@numba.njit(cache=True, nogil=True)
def _margin(x, roots, feature, threshold, left, default_left, value, base):
    out = np.full(x.shape[0], base)
    for t in range(roots.shape[0]):  # tree-major: one tree's nodes stay in cache for the rows
        for i in range(x.shape[0]):
            node = roots[t]
            while feature[node] >= 0:  # the right child is the left child + 1
                node = left[node] + (1 - _goes_left(x[i, feature[node]], threshold[node], default_left[node]))
            out[i] += value[node]
    return out


@numba.njit(cache=True, nogil=True)
def _saabas(x, roots, feature, threshold, left, default_left, value, node_mean, base):
    margin = np.full(x.shape[0], base)
    out = np.zeros(x.shape)
    for t in range(roots.shape[0]):
        for i in range(x.shape[0]):
            node = roots[t]
            while feature[node] >= 0:
                f = feature[node]
                child = left[node] + (1 - _goes_left(x[i, f], threshold[node], default_left[node]))
                out[i, f] += node_mean[child] - node_mean[node]
                node = child
            margin[i] += value[node]
    return margin, out


@numba.njit(cache=True, nogil=True)
def _few_rows_contributions(x, feature, threshold, default_left, group_offset, position_node, position_flip,
                            slot_offset, slot_feature, table_offset, table, pattern_offset, pattern_value,
                            base):  # fmt: skip
    """Row by row, group by group: each decision is taken where a group needs it (a decision
    above several groups is taken once per group; cheaper than storing them for one row)."""
    out = np.zeros(x.shape)
    margin = np.full(x.shape[0], base)
    for i in range(x.shape[0]):
        row = x[i]
        contributions = out[i]
        for group in range(group_offset.shape[0] - 1):
            first_position = group_offset[group]
            pattern = 0
            for p in range(group_offset[group + 1] - first_position):
                node = position_node[first_position + p]
                bit = _goes_left(row[feature[node]], threshold[node], default_left[node])
                pattern |= (bit ^ position_flip[first_position + p]) << p
            margin[i] += pattern_value[pattern_offset[group] + pattern]  # +0.0 unless the leaf is here
            patterns = 1 << (group_offset[group + 1] - first_position)
            first_slot = slot_offset[group]
            at = table_offset[group] + pattern
            for s in range(slot_offset[group + 1] - first_slot):
                contributions[slot_feature[first_slot + s]] += table[at + s * patterns]
    return margin, out


@numba.njit(cache=True, nogil=True)
def _table_block(xt, out, margin, lo, hi, goes_left, pattern, with_contributions, tree_nodes, tree_groups,
                 feature, threshold, default_left, group_offset, position_node, position_flip, slot_offset,
                 slot_feature, table_offset, table, pattern_offset, pattern_value):  # fmt: skip
    """Rows ``lo:hi``, tree by tree, with features as rows (``xt``, ``out``: features x rows).

    Every inner loop runs over the block's rows on contiguous memory, indexed from 0 (slices:
    an index ``lo + i`` needs a negative-index check that keeps the compiler from SIMD code),
    with decisions and patterns as bytes (32 lanes a vector), so the decisions and the pattern
    bits are SIMD code; a tree's decisions and tables stay in cache for the block. (Row-major
    loops with the positions innermost ran 2.8x slower; 64-row blocks of int32 decisions indexed
    ``lo + i`` 2.5x slower.) Without contributions only the margin is summed.
    """
    m = hi - lo
    block_margin = margin[lo:hi]
    block_pattern = pattern[:m]
    for t in range(tree_nodes.shape[0] - 1):
        first_node = tree_nodes[t]
        for node in range(first_node, tree_nodes[t + 1]):
            f = feature[node]
            if f >= 0:
                cut = threshold[node]
                missing_left = default_left[node] == 1
                values = xt[f, lo:hi]
                decisions = goes_left[node - first_node]
                for i in range(m):
                    v = values[i]
                    decisions[i] = (v < cut) or (missing_left and v != v)  # NaN: the default way
        for group in range(tree_groups[t], tree_groups[t + 1]):
            first_position = group_offset[group]
            block_pattern[:] = 0
            for p in range(group_offset[group + 1] - first_position):
                decisions = goes_left[position_node[first_position + p] - first_node]
                flip = position_flip[first_position + p]
                for i in range(m):
                    block_pattern[i] |= (decisions[i] ^ flip) << p
            reached = pattern_value[pattern_offset[group] : pattern_offset[group + 1]]
            for i in range(m):  # trees in order, one leaf each (+0.0 elsewhere): `_margin_block`'s sum
                block_margin[i] += reached[block_pattern[i]]
            if not with_contributions:
                continue
            patterns = 1 << (group_offset[group + 1] - first_position)
            first_slot = slot_offset[group]
            for s in range(slot_offset[group + 1] - first_slot):
                target = out[slot_feature[first_slot + s], lo:hi]
                values = table[table_offset[group] + s * patterns : table_offset[group] + (s + 1) * patterns]
                for i in range(m):
                    target[i] += values[block_pattern[i]]


@numba.njit(cache=True, nogil=True)
def _widest_tree(tree_nodes):
    widest = 0
    for t in range(tree_nodes.shape[0] - 1):
        widest = max(widest, tree_nodes[t + 1] - tree_nodes[t])
    return widest


@numba.njit(cache=True, nogil=True)
def _table_pass(xt, pattern, with_contributions, tree_nodes, tree_groups, feature, threshold, default_left,
                group_offset, position_node, position_flip, slot_offset, slot_feature, table_offset, table,
                pattern_offset, pattern_value, base):  # fmt: skip
    """One thread, blocks of ``len(pattern)`` rows (see `TABLE_BLOCK_ROWS`)."""
    out = np.zeros((xt.shape[0] if with_contributions else 0, xt.shape[1]))
    margin = np.full(xt.shape[1], base)
    block = pattern.shape[0]
    goes_left = np.zeros((_widest_tree(tree_nodes), block), dtype=pattern.dtype)  # bits shift in their type
    for lo in range(0, xt.shape[1], block):
        hi = min(xt.shape[1], lo + block)
        _table_block(xt, out, margin, lo, hi, goes_left, pattern, with_contributions, tree_nodes, tree_groups,
                     feature, threshold, default_left, group_offset, position_node, position_flip, slot_offset,
                     slot_feature, table_offset, table, pattern_offset, pattern_value)  # fmt: skip
    return margin, out


@numba.njit(cache=True)
def _leaf_tables(slot_offset, zero_fraction, leaf_value, table_offset, table):
    """Shapley values of every agree/disagree pattern of every leaf's distinct path features.

    A leaf with value v and distinct path features 1..k (cover fractions z_j, agreement o_j in
    {0, 1}) adds to feature i:  v (o_i - z_i) sum_{U subset of the others} w(|U|, k)
    prod_{j in U} o_j prod_{j not in U} z_j,  with w(u, k) = u! (k - u - 1)! / k!.
    """
    weights = np.zeros(64)
    coeff = np.zeros(65)
    for leaf in range(leaf_value.shape[0]):
        first = slot_offset[leaf]
        k = slot_offset[leaf + 1] - first
        for u in range(k):
            weights[u] = math.exp(math.lgamma(u + 1) + math.lgamma(k - u) - math.lgamma(k + 1))
        for pattern in range(1 << k):
            base = table_offset[leaf] + pattern * k
            for i in range(k):
                coeff[:] = 0.0
                coeff[0] = 1.0
                degree = 0
                for j in range(k):
                    if j == i:
                        continue
                    o = (pattern >> j) & 1
                    z = zero_fraction[first + j]
                    for u in range(degree + 1, 0, -1):
                        coeff[u] = coeff[u] * z + coeff[u - 1] * o
                    coeff[0] = coeff[0] * z
                    degree += 1
                total = 0.0
                for u in range(degree + 1):
                    total += weights[u] * coeff[u]
                o_i = (pattern >> i) & 1
                table[base + i] = leaf_value[leaf] * (o_i - zero_fraction[first + i]) * total


@numba.njit(cache=True)
def _group_tables(group_offset, group_leaves, leaf_entry_offset, entry_position, entry_bit, entry_slot,
                  leaf_slot_offset, leaf_group_slot, leaf_table_offset, leaf_table, slot_offset,
                  table_offset, table, leaf_value, pattern_offset, pattern_value):  # fmt: skip
    """Sum the leaf tables of each group into one table over the group's position bits.

    A bit pattern fixes every decision of the group; a leaf's feature agrees when all its path
    positions on that feature show the leaf's own direction (bit == entry_bit). The leaf whose
    path agrees everywhere is the one a row with that pattern reaches: its value goes to
    ``pattern_value`` (patterns that leave the group's subtree keep 0.0).
    """
    for group in range(group_offset.shape[0] - 1):
        patterns = 1 << (group_offset[group + 1] - group_offset[group])
        for pattern in range(patterns):
            base = table_offset[group] + pattern
            for leaf in range(group_leaves[group], group_leaves[group + 1]):
                first_slot = leaf_slot_offset[leaf]
                k = leaf_slot_offset[leaf + 1] - first_slot
                disagree = 0
                for e in range(leaf_entry_offset[leaf], leaf_entry_offset[leaf + 1]):
                    if ((pattern >> entry_position[e]) & 1) != entry_bit[e]:
                        disagree |= 1 << entry_slot[e]
                if disagree == 0:
                    pattern_value[pattern_offset[group] + pattern] = leaf_value[leaf]
                leaf_base = leaf_table_offset[leaf] + (((1 << k) - 1) & ~disagree) * k
                for s in range(k):
                    table[base + leaf_group_slot[first_slot + s] * patterns] += leaf_table[leaf_base + s]


# --- building from XGBoost -----------------------------------------------------------------------


def _base_margin(learner: dict) -> float:
    raw = learner["learner_model_param"]["base_score"].strip("[]")
    score = float(raw.split(",")[0])
    objective = learner["objective"]["name"]
    if objective in ("binary:logistic", "reg:logistic"):
        return math.log(score / (1.0 - score))
    if objective == "binary:logitraw":
        return score
    raise ValueError(f"objective {objective!r} is not a binary log-odds model")


def _from_xgboost_json(model: dict) -> CompiledTrees:
    learner = model["learner"]
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise ValueError(f"booster {booster['name']!r} is not supported (gbtree only)")
    if int(learner["learner_model_param"].get("num_target", "1")) != 1:
        raise ValueError("multi-output models are not supported")
    trees = booster["model"]["trees"]
    n_features = int(learner["learner_model_param"]["num_feature"])
    feature, threshold, left, default_left, value, cover, roots = [], [], [], [], [], [], []
    offset = 0
    for tree in trees:
        if any(tree["split_type"]):
            raise ValueError("categorical splits are not supported")
        lc = np.asarray(tree["left_children"], dtype=np.int64)
        rc = np.asarray(tree["right_children"], dtype=np.int64)
        leaf = lc < 0
        if np.any(rc[~leaf] != lc[~leaf] + 1):  # the layout the walk relies on
            raise ValueError("a tree's right children do not follow their left siblings")
        # XGBoost stores float32: round-trip the JSON decimals through float32 to get its exact values.
        cond = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
        feature.append(np.where(leaf, -1, np.asarray(tree["split_indices"], dtype=np.int64)))
        threshold.append(np.where(leaf, np.inf, cond))
        left.append(np.where(leaf, -1, lc + offset))
        default_left.append(np.asarray(tree["default_left"], dtype=np.uint8))
        value.append(np.where(leaf, cond, 0.0))
        cover.append(np.asarray(tree["sum_hessian"], dtype=np.float32).astype(np.float64))
        roots.append(offset)
        offset += len(lc)
    return _assemble(
        n_features=n_features,
        base_margin=_base_margin(learner),
        roots=np.asarray(roots),
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        left=np.concatenate(left),
        default_left=np.concatenate(default_left),
        value=np.concatenate(value),
        cover=np.concatenate(cover),
    )


# --- building from LightGBM ----------------------------------------------------------------------


def _from_lightgbm_dump(model: dict) -> CompiledTrees:
    """LightGBM's ``dump_model()``: nested trees, ``x <= threshold`` splits, counts as cover.

    ``x <= t`` is ``x < nextafter(t, +inf)`` in float64; a feature whose missing values LightGBM
    turns into zero (``missing_type`` None) sends NaN where 0 goes. Zero-as-missing and
    categorical splits are out of scope.
    """
    if model.get("num_class", 1) != 1 or model.get("num_tree_per_iteration", 1) != 1:
        raise ValueError("multi-class models are not supported")
    n_features = int(model["max_feature_idx"]) + 1
    feature, threshold, left, default_left, value, cover, roots = [], [], [], [], [], [], []

    def new_node() -> int:
        for column in (feature, threshold, left, default_left, value, cover):
            column.append(0)
        return len(feature) - 1

    for info in model["tree_info"]:
        root = new_node()
        roots.append(root)
        stack = [(info["tree_structure"], root)]
        while stack:
            node, at = stack.pop()
            if "leaf_value" in node or "split_feature" not in node:
                feature[at], threshold[at], left[at] = -1, np.inf, -1
                value[at] = float(node.get("leaf_value", 0.0))
                cover[at] = float(node.get("leaf_count", 0))
                continue
            if node.get("decision_type", "<=") != "<=":
                raise ValueError("categorical splits are not supported")
            missing = node.get("missing_type", "None")
            if missing == "Zero":
                raise ValueError("zero-as-missing splits are not supported")
            cut = float(node["threshold"])
            feature[at] = int(node["split_feature"])
            threshold[at] = float(np.nextafter(cut, np.inf))
            default_left[at] = int(bool(node.get("default_left"))) if missing == "NaN" else int(cut >= 0.0)
            cover[at] = float(node.get("internal_count", 0))
            lo = new_node()
            hi = new_node()  # the right child right after the left one, as the walk expects
            left[at] = lo
            stack += [(node["right_child"], hi), (node["left_child"], lo)]
    feature_arr = np.asarray(feature, dtype=np.int64)
    left_arr = np.asarray(left, dtype=np.int64)
    compiled = _assemble(
        n_features=n_features,
        base_margin=0.0,
        roots=np.asarray(roots),
        feature=feature_arr,
        threshold=np.asarray(threshold, dtype=np.float64),
        left=left_arr,
        default_left=np.asarray(default_left, dtype=np.uint8),
        value=np.asarray(value, dtype=np.float64),
        cover=np.asarray(cover, dtype=np.float64),
        threshold_dtype=np.float64,
    )
    return dataclasses.replace(compiled, zero_below=LIGHTGBM_ZERO)


def _preorder(root: int, feature: np.ndarray, left: np.ndarray) -> list[int]:
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if feature[node] >= 0:
            stack += [int(left[node]) + 1, int(left[node])]
    return order


class _Tables:
    """Collects the leaves' and groups' ragged arrays while `_assemble` walks the trees."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value
        self.leaf_slot_offset, self.zero_fraction, self.leaf_value, self.leaf_table_offset = [0], [], [], []
        self.pattern_offset = [0]
        self.leaf_entry_offset, self.entry_position, self.entry_bit, self.entry_slot = [0], [], [], []
        self.leaf_group_slot: list[int] = []
        self.group_offset, self.position_node, self.position_flip = [0], [], []
        self.slot_offset, self.slot_feature, self.group_leaves, self.table_offset = [0], [], [0], []
        self.leaf_table_size = 0
        self.table_size = 0

    def add_group(self, ancestors, subtree, feature, cover, left) -> None:
        positions = [(node, 1 - went_left) for node, went_left in ancestors]
        positions += [(node, 0) for node in subtree if feature[node] >= 0]
        index = {node: i for i, (node, _) in enumerate(positions)}
        group_slots: dict[int, int] = {}
        for node, _ in positions:
            group_slots.setdefault(int(feature[node]), len(group_slots))
        self.position_node += [node for node, _ in positions]
        self.position_flip += [flip for _, flip in positions]
        self.group_offset.append(len(self.position_node))
        self.slot_feature += list(group_slots)
        self.slot_offset.append(len(self.slot_feature))
        self.table_offset.append(self.table_size)
        self.table_size += (1 << len(positions)) * len(group_slots)
        self.pattern_offset.append(self.pattern_offset[-1] + (1 << len(positions)))
        above = {node for node, _ in ancestors}
        stack = [(subtree[0], list(ancestors))]
        while stack:
            node, path = stack.pop()
            if feature[node] >= 0:
                stack += [(int(left[node]) + 1, [*path, (node, 0)]), (int(left[node]), [*path, (node, 1)])]
                continue
            slots: dict[int, int] = {}
            fractions: list[float] = []
            for depth, (parent, went_left) in enumerate(path):
                child = path[depth + 1][0] if depth + 1 < len(path) else node
                f = int(feature[parent])
                if f not in slots:
                    slots[f] = len(slots)
                    fractions.append(1.0)
                fractions[slots[f]] *= cover[child] / cover[parent] if cover[parent] > 0 else 0.0
                self.entry_position.append(index[parent])
                self.entry_bit.append(1 if parent in above else went_left)
                self.entry_slot.append(slots[f])
            self.leaf_entry_offset.append(len(self.entry_position))
            self.leaf_group_slot += [group_slots[f] for f in slots]
            self.zero_fraction += fractions
            self.leaf_slot_offset.append(len(self.leaf_group_slot))
            self.leaf_value.append(float(self.value[node]))
            self.leaf_table_offset.append(self.leaf_table_size)
            self.leaf_table_size += (1 << len(slots)) * len(slots)
        self.group_leaves.append(len(self.leaf_value))
        if max(self.table_size, self.leaf_table_size) > MAX_TABLE_ENTRIES:
            raise ValueError(f"TreeSHAP tables would exceed {MAX_TABLE_ENTRIES:,} entries")

    def fill(self) -> tuple[np.ndarray, np.ndarray]:
        """``(table, pattern_value)``: the groups' summed Shapley values, and per pattern the value
        of the leaf it reaches."""
        i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        leaf_table = np.zeros(self.leaf_table_size)
        _leaf_tables(
            i64(self.leaf_slot_offset), np.asarray(self.zero_fraction, dtype=np.float64),
            np.asarray(self.leaf_value, dtype=np.float64), i64(self.leaf_table_offset), leaf_table,
        )  # fmt: skip
        table = np.zeros(self.table_size)
        pattern_value = np.zeros(self.pattern_offset[-1])
        _group_tables(
            i64(self.group_offset), i64(self.group_leaves), i64(self.leaf_entry_offset),
            i64(self.entry_position), i64(self.entry_bit), i64(self.entry_slot), i64(self.leaf_slot_offset),
            i64(self.leaf_group_slot), i64(self.leaf_table_offset), leaf_table, i64(self.slot_offset),
            i64(self.table_offset), table, np.asarray(self.leaf_value, dtype=np.float64), i64(self.pattern_offset),
            pattern_value,
        )  # fmt: skip
        return table, pattern_value


def _assemble(*, n_features, base_margin, roots, feature, threshold, left, default_left, value, cover,
              threshold_dtype=np.float32) -> CompiledTrees:  # fmt: skip
    """Cut every tree into groups of at most GROUP_BITS decisions and tabulate their Shapley values."""
    tables = _Tables(value)
    tree_groups = [0]
    node_mean = np.asarray(value, dtype=np.float64).copy()  # leaves: their value; splits: below
    for root in roots:
        order = _preorder(int(root), feature, left)
        below: dict[int, int] = {}  # internal nodes in each node's subtree
        for node in reversed(order):  # children before parents
            below[node] = 0 if feature[node] < 0 else 1 + below[int(left[node])] + below[int(left[node]) + 1]
            if feature[node] >= 0:
                lc, rc = int(left[node]), int(left[node]) + 1
                mean = node_mean[lc] * cover[lc] + node_mean[rc] * cover[rc]
                node_mean[node] = mean / cover[node] if cover[node] > 0 else 0.0
        stack: list[tuple[int, list[tuple[int, int]]]] = [(int(root), [])]
        while stack:
            node, ancestors = stack.pop()
            if feature[node] >= 0 and len(ancestors) + below[node] > GROUP_BITS:
                stack += [
                    (int(left[node]) + 1, [*ancestors, (node, 0)]),
                    (int(left[node]), [*ancestors, (node, 1)]),
                ]
                continue
            tables.add_group(ancestors, _preorder(node, feature, left), feature, cover, left)
        tree_groups.append(len(tables.group_offset) - 1)
    table, pattern_value = tables.fill()
    i32 = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
    leaf = feature < 0
    root_of = np.repeat(np.arange(len(roots)), np.diff(np.append(roots, len(feature))))
    reach = np.divide(cover, cover[np.asarray(roots)][root_of], out=np.zeros(len(cover)), where=leaf)
    expected_value = float(base_margin + np.sum(value * reach))
    return CompiledTrees(
        n_features=int(n_features),
        base_margin=float(base_margin),
        expected_value=expected_value,
        roots=np.asarray(roots, dtype=np.int32),
        feature=np.asarray(feature, dtype=np.int32),
        threshold=np.asarray(threshold, dtype=threshold_dtype),
        left=np.asarray(left, dtype=np.int32),
        default_left=np.asarray(default_left, dtype=np.uint8),
        value=np.asarray(value, dtype=np.float64),
        tree_nodes=np.append(i32(roots), len(feature)).astype(np.int32),
        tree_groups=i32(tree_groups),
        group_offset=i32(tables.group_offset),
        position_node=np.asarray(tables.position_node, dtype=np.int32),
        position_flip=np.asarray(tables.position_flip, dtype=np.uint8),
        slot_offset=i32(tables.slot_offset),
        slot_feature=np.asarray(tables.slot_feature, dtype=np.int32),
        table_offset=i32(tables.table_offset),
        table=table.astype(np.float32),  # half the cache footprint; XGBoost's own SHAP is float32
        pattern_offset=i32(tables.pattern_offset),
        pattern_value=pattern_value,
        node_mean=node_mean,
    )


def probe_rows(trees: CompiledTrees, n_rows: int = 256, seed: int = 0) -> np.ndarray:
    """Rows that exercise every kind of decision: values exactly at, just below and just above
    the ensemble's own split thresholds, and missing values (NaN, 5%)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, trees.n_features))
    split = trees.feature >= 0
    for f in range(trees.n_features):
        cuts = trees.threshold[split & (trees.feature == f)]  # in the dtype the trees compare in
        if not len(cuts):
            continue
        picked = rng.choice(cuts, size=n_rows)
        step = rng.integers(-1, 2, size=n_rows)  # just below, at, just above the cut
        toward = np.where(step < 0, -np.inf, np.where(step > 0, np.inf, picked)).astype(cuts.dtype)
        x[:, f] = np.nextafter(picked, toward)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def _verified(compiled: CompiledTrees, margin_of, shap_of, library: str, n_probe: int, approx_of=None):
    """``(compiled, "")`` if it reproduces the library on probe rows within 1e-4, else ``(None, why)``.

    ``approx_of``: the library's Saabas contributions, where it has them (XGBoost)."""
    probe = probe_rows(compiled, n_probe)
    their_margin = np.asarray(margin_of(probe), dtype=np.float64)
    their_shap = np.asarray(shap_of(probe), dtype=np.float64)
    explained_margin, contributions = compiled.explain(probe)
    walked_margin, approximate = compiled.approximate(probe)
    gaps = {
        "margin": np.abs(compiled.margin(probe) - their_margin),
        "SHAP": np.abs(contributions - their_shap[:, :-1]),
        "SHAP bias": np.abs(compiled.expected_value - their_shap[:, -1]),
        "SHAP sum": np.abs(compiled.expected_value + contributions.sum(axis=1) - their_margin),
        "TreeSHAP pass margin": np.abs(explained_margin - their_margin),
        "Saabas margin": np.abs(walked_margin - their_margin),
    }
    if approx_of is not None:
        gaps["Saabas"] = np.abs(approximate - np.asarray(approx_of(probe), dtype=np.float64)[:, :-1])
    worst = {name: float(np.max(gap, initial=0.0)) for name, gap in gaps.items()}
    if max(worst.values()) > _TOLERANCE:
        detail = ", ".join(f"{name} {gap:.2e}" for name, gap in worst.items())
        return None, f"compiled trees disagree with {library} ({detail})"
    return compiled, ""


def compile_booster(booster, n_probe: int = 256) -> tuple[CompiledTrees | None, str]:
    """Compile an XGBoost booster and check it against XGBoost itself on `probe_rows`.

    Returns ``(compiled, "")``, or ``(None, why)`` when the model is out of scope or the compiled
    margin, contributions or bias differ from XGBoost's ``predict`` / ``pred_contribs`` by more
    than 1e-4 on any probe row.
    """
    import xgboost as xgb

    try:
        compiled = _from_xgboost_json(json.loads(booster.save_raw("json")))
    except (ValueError, KeyError, IndexError) as err:
        return None, f"not compiled: {err}"

    def matrix(rows):
        return xgb.DMatrix(rows.astype(np.float32), nthread=1)

    return _verified(
        compiled,
        lambda rows: booster.predict(matrix(rows), output_margin=True, validate_features=False),
        lambda rows: booster.predict(matrix(rows), pred_contribs=True, validate_features=False),
        "XGBoost",
        n_probe,
        lambda rows: booster.predict(
            matrix(rows), pred_contribs=True, approx_contribs=True, validate_features=False
        ),
    )


def compile_lightgbm(booster, n_probe: int = 256) -> tuple[CompiledTrees | None, str]:
    """Compile a LightGBM booster (``lgb.Booster``) and check it against LightGBM itself, like
    `compile_booster`."""
    try:
        compiled = _from_lightgbm_dump(booster.dump_model())
    except (ValueError, KeyError, IndexError) as err:
        return None, f"not compiled: {err}"
    return _verified(
        compiled,
        lambda rows: booster.predict(rows, raw_score=True, num_threads=1),
        lambda rows: booster.predict(rows, pred_contrib=True, num_threads=1),
        "LightGBM",
        n_probe,
    )
