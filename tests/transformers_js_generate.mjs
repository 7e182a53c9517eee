// Greedy generation from a local sgm-export ONNX folder with transformers.js, as a user runs it:
// `pipeline("text-generation", folder)` and `AutoModelForCausalLM.generate` with default options.
// Usage: node transformers_js_generate.mjs PACKAGE_DIR FOLDER MAX_NEW_TOKENS PROMPT [PROMPT ...]
// PACKAGE_DIR is the folder whose node_modules holds @huggingface/transformers (wherever npm put it).
// Prints JSON: for the first prompt alone and for all prompts as one left-padded batch, the
// pipeline's texts, and generate's input and output token ids. Run by tests/test_transformers_js.py.
import { createRequire } from "node:module";
import path from "node:path";

const [packageDir, folder, maxNewTokens, ...prompts] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(packageDir), "package.json"));
const { AutoModelForCausalLM, AutoTokenizer, env, pipeline } = require("@huggingface/transformers");

env.allowRemoteModels = false; // a local folder, offline

const options = { max_new_tokens: Number(maxNewTokens), do_sample: false };

const generator = await pipeline("text-generation", folder);
const pipelineTexts = async (texts) => (await generator(texts, options)).map((out) => (Array.isArray(out) ? out[0] : out).generated_text);

const tokenizer = await AutoTokenizer.from_pretrained(folder);
const model = await AutoModelForCausalLM.from_pretrained(folder);
tokenizer.padding_side = "left";
async function generateIds(texts) {
  const inputs = tokenizer(texts, { padding: true });
  const output = await model.generate({ ...inputs, ...options });
  return { input_ids: inputs.input_ids.tolist().map((row) => row.map(Number)), sequences: output.tolist().map((row) => row.map(Number)) };
}

const result = {
  single: { pipeline: await pipelineTexts([prompts[0]]), generate: await generateIds([prompts[0]]) },
  batch: { pipeline: await pipelineTexts(prompts), generate: await generateIds(prompts) },
};
console.log(JSON.stringify(result));
