// Validate KEDA resources (JSON array in a file) with the KEDA models of the npm package
// @kubernetes-models/keda (schemas generated from KEDA's Go API types), installed by
// scripts/validate-deploy.sh into a cache folder outside the checkout.
//   node scripts/validate-keda.mjs NODE_PREFIX RESOURCES.json
// The models' validate() checks types and required fields but allows unknown fields; like
// `kubernetes-validate --strict`, unknown fields are refused here too, from the models' typings.
// Prints one line per problem; exit status 1 if any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, input] = process.argv.slice(2);
const models = join(prefix, "node_modules", "@kubernetes-models", "keda", "keda.sh", "v1alpha1");
const KINDS = new Set([
  "ScaledObject",
  "ScaledJob",
  "TriggerAuthentication",
  "ClusterTriggerAuthentication",
]);

// The fields of a model, from its .d.ts: name -> {type: model file stem or null, array};
// null for a type that is not an object model.
const typings = new Map();
function fields(stem) {
  if (typings.has(stem)) return typings.get(stem);
  const src = readFileSync(join(models, `${stem}.d.ts`), "utf8");
  const imports = new Map();
  for (const m of src.matchAll(/import \{ (\w+) \} from "\.\/(\w+)\.js";/g)) imports.set(m[1], m[2]);
  const start = src.indexOf("export interface");
  if (start < 0) {
    // An alias of another model (export type IA = IB;) or a plain type: follow or accept it.
    const alias = src.match(/^export type I\w+ = (\w+);$/m);
    const target = alias ? imports.get(alias[1]) : undefined;
    const out = target ? fields(target) : null;
    typings.set(stem, out);
    return out;
  }
  const body = src.slice(start, src.indexOf("\n}", start));
  const out = new Map();
  for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.+?);?$/gm)) {
    const array = m[2].match(/^Array<(\w+)>$/);
    const type = array ? array[1] : m[2].trim();
    out.set(m[1], { type: imports.get(type) ?? null, array: Boolean(array) });
  }
  typings.set(stem, out);
  return out;
}

function unknownFields(value, stem, path, problems) {
  const known = fields(stem);
  if (known === null) return;
  for (const [key, v] of Object.entries(value)) {
    const field = known.get(key);
    if (!field) {
      problems.push(`${path}.${key}: unknown field`);
      continue;
    }
    if (!field.type || v === null || typeof v !== "object") continue;
    const items = field.array && Array.isArray(v) ? v.map((x, i) => [`[${i}]`, x]) : [["", v]];
    for (const [suffix, item] of items) {
      if (item !== null && typeof item === "object") {
        unknownFields(item, field.type, `${path}.${key}${suffix}`, problems);
      }
    }
  }
}

const problems = [];
for (const obj of JSON.parse(readFileSync(input, "utf8"))) {
  const where = `${obj.kind}/${obj.metadata?.name}`;
  if (obj.apiVersion !== "keda.sh/v1alpha1" || !KINDS.has(obj.kind)) {
    problems.push(`${where}: no KEDA model for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  const module = await import(pathToFileURL(join(models, `${obj.kind}.js`)).href);
  try {
    new module[obj.kind](obj).validate();
  } catch (err) {
    problems.push(`${where}: ${err.message}`);
  }
  const { metadata, ...rest } = obj; // ObjectMeta: the Kubernetes schema's business
  unknownFields(rest, obj.kind, where, problems);
}
for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
