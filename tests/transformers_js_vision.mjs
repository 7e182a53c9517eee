// Greedy generation with an image from a local sgm-export vision-language ONNX folder with
// transformers.js, as a user runs it: AutoProcessor, AutoModelForImageTextToText, RawImage.read,
// the processor's chat template, `generate` with default options.
// Usage: node transformers_js_vision.mjs PACKAGE_DIR FOLDER MAX_NEW_TOKENS IMAGES_FIRST PROMPT IMAGE [PROMPT IMAGE ...]
// IMAGES_FIRST is 1 where the family's processor takes (images, text) (LLaVA) and 0 where it
// takes (text, images) (Qwen2-VL, Qwen2.5-VL). Prints JSON: input ids and greedy sequences for
// the first prompt alone and, given more than one, for all prompts as one batch. Run by
// tests/test_transformers_js.py.
import { createRequire } from "node:module";
import path from "node:path";

const [packageDir, folder, maxNewTokens, imagesFirst, ...pairs] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(packageDir), "package.json"));
const { AutoModelForImageTextToText, AutoProcessor, RawImage, env } = require("@huggingface/transformers");

env.allowRemoteModels = false; // a local folder, offline

const prompts = pairs.filter((_, index) => index % 2 === 0);
const images = await Promise.all(pairs.filter((_, index) => index % 2 === 1).map((file) => RawImage.read(file)));
const processor = await AutoProcessor.from_pretrained(folder);
const model = await AutoModelForImageTextToText.from_pretrained(folder);
processor.tokenizer.padding_side = "left";

function render(prompt) {
  if (!processor.tokenizer.chat_template && !processor.chat_template) return prompt; // PaliGemma: the processor writes the prompt
  const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: prompt }] }];
  return processor.apply_chat_template(messages, { add_generation_prompt: true });
}

async function generateIds(count) {
  const texts = prompts.slice(0, count).map(render);
  const pictures = images.slice(0, count);
  // A chat template that writes <bos> itself is tokenized without adding another, as transformers' processors do.
  const bos = processor.tokenizer.bos_token;
  const options = { padding: true, add_special_tokens: !(bos && texts[0].startsWith(bos)) };
  const inputs = imagesFirst === "1" ? await processor(pictures, texts, options) : await processor(texts, pictures, options);
  const output = await model.generate({ ...inputs, max_new_tokens: Number(maxNewTokens), do_sample: false });
  return { input_ids: inputs.input_ids.tolist().map((row) => row.map(Number)), sequences: output.tolist().map((row) => row.map(Number)) };
}

const result = { single: await generateIds(1) };
if (prompts.length > 1) result.batch = await generateIds(prompts.length);
console.log(JSON.stringify(result));
