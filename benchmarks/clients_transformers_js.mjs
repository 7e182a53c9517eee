// transformers.js's part of benchmarks/clients.py: greedy tokens and decode timing of a local
// sgm-export ONNX folder, with default options, as a user runs it.
// Usage: node clients_transformers_js.mjs PACKAGE_DIR FOLDER MAX_NEW_TOKENS THREADS PROMPT [PROMPT ...]
// PACKAGE_DIR is the folder whose node_modules holds @huggingface/transformers; THREADS is ONNX
// Runtime's intra-op thread count (0: its default, all cores).
// Prints one JSON line: per prompt, the input ids, the new token ids of an N-token and of a 1-token
// generation and their seconds, and the pipeline's text for the first prompt.
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";

const [packageDir, folder, maxNewTokens, threads, ...prompts] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(packageDir), "package.json"));
const { AutoModelForCausalLM, AutoTokenizer, env, pipeline } = require("@huggingface/transformers");

env.allowRemoteModels = false; // a local folder, offline

const n = Number(maxNewTokens);
const options = Number(threads) > 0 ? { session_options: { intraOpNumThreads: Number(threads) } } : {};
const generator = await pipeline("text-generation", folder, options);
const [piped] = await generator(prompts[0], { max_new_tokens: n, do_sample: false });

const tokenizer = await AutoTokenizer.from_pretrained(folder);
const model = await AutoModelForCausalLM.from_pretrained(folder, options);

async function timedGenerate(inputs, tokens) {
  const start = performance.now();
  const output = await model.generate({ ...inputs, max_new_tokens: tokens, do_sample: false });
  const seconds = (performance.now() - start) / 1000;
  return { ids: output.tolist()[0].map(Number), seconds };
}

const rows = [];
for (const prompt of prompts) {
  const inputs = tokenizer(prompt);
  const inputIds = inputs.input_ids.tolist()[0].map(Number);
  await timedGenerate(inputs, 1); // warm-up
  const full = await timedGenerate(inputs, n);
  const one = await timedGenerate(inputs, 1);
  rows.push({ input_ids: inputIds, new_ids: full.ids.slice(inputIds.length), seconds: full.seconds, one_token_seconds: one.seconds });
}
console.log(JSON.stringify({ pipeline_text: piped.generated_text, prompts: rows }));
