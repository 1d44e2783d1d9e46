// The new-run form's data layer: reading the API's JSON schema, dotted config paths, value parsing, epoch maths.

/** Walk the pydantic JSON schema to a field, following $ref and the non-null branch of anyOf. */
export function deref(root, node) {
  let current = node;
  for (let guard = 0; current && guard < 10; guard += 1) {
    if (current.$ref) {
      const target = current.$ref.replace(/^#\//, "").split("/").reduce((acc, key) => acc?.[key], root);
      current = { ...target, ...withoutKeys(current, ["$ref"]) };
    } else if (current.anyOf) {
      const branch = current.anyOf.find((s) => s.type !== "null");
      if (!branch) return current;
      current = { ...branch, ...withoutKeys(current, ["anyOf"]) };
    } else return current;
  }
  return current || {};
}

const withoutKeys = (obj, keys) => Object.fromEntries(Object.entries(obj).filter(([k]) => !keys.includes(k)));

/** The schema node of a dotted config path ({} when the schema has no such field). */
export function schemaAt(root, path) {
  let node = root;
  for (const key of path.split(".")) {
    node = deref(root, node)?.properties?.[key];
    if (!node) return {};
  }
  return deref(root, node);
}

export const getPath = (obj, path) => path.split(".").reduce((acc, key) => (acc === null || acc === undefined ? undefined : acc[key]), obj);

export function setPath(obj, path, value) {
  const keys = path.split(".");
  let node = obj;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
    node = node[key];
  }
  node[keys[keys.length - 1]] = value;
}

export const splitList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

/** A number when the text is one; otherwise the raw text, so the API names the field in its 422. */
export const toNumber = (text) => (text.trim() === "" ? null : Number.isFinite(Number(text)) ? Number(text) : text);

/** "0.9, 0.95" → [0.9, 0.95]; one value stays a one-element list; empty → [null]. */
export function numberList(text) {
  const items = splitList(text).map(toNumber);
  return items.length ? items : [null];
}

/**
 * Optimizer steps per epoch (the engine keeps the last partial batch), or null when the size is unknown.
 * `trainSamples` maps a built-in dataset to its training-set size: GET /api/options serves it as `train_samples`
 * (prunescope/contract/datasets.py), so plugin datasets are unknown here and get no step advice.
 */
export function stepsPerEpoch(dataset, limit, batchSize, trainSamples = {}) {
  const size = Object.hasOwn(trainSamples ?? {}, dataset) ? trainSamples[dataset] : null;
  if (!Number.isInteger(size) || size < 1 || !Number.isInteger(batchSize) || batchSize < 1) return null;
  const samples = Number.isInteger(limit) && limit > 0 ? Math.min(limit, size) : size;
  return Math.ceil(samples / batchSize);
}

/**
 * An epoch number moved to a run of a different length, keeping its place in the run: 15 of 30 → 5 of 10.
 * Epoch 0 (before training) stays 0; any later epoch stays ≥ 1 and within the new length.
 */
export function rescaleEpoch(value, fromEpochs, toEpochs) {
  if (!Number.isInteger(value) || !(fromEpochs > 0) || !(toEpochs > 0)) return value;
  if (value === 0) return 0;
  return Math.min(toEpochs, Math.max(1, Math.round((value * toEpochs) / fromEpochs)));
}
