// Runs an ONNX model with ONNX Runtime (npm onnxruntime-node, CPU) for test_onnx_export:
//   node onnx_run.js MODEL IN.bin N,C,H,W OUT.bin [IN.bin N,C,H,W OUT.bin ...]
// Inputs and outputs are raw little-endian float32. Prints ONNX Runtime's version.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, ...runs] = process.argv.slice(2);
  if (!model || runs.length === 0 || runs.length % 3 !== 0) {
    console.error('usage: node onnx_run.js MODEL IN.bin N,C,H,W OUT.bin ...');
    process.exit(2);
  }
  const session = await ort.InferenceSession.create(model);
  for (let i = 0; i < runs.length; i += 3) {
    const bytes = fs.readFileSync(runs[i]);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const dims = runs[i + 1].split(',').map(Number);
    const result = await session.run({input: new ort.Tensor('float32', data, dims)});
    const out = result.output;
    fs.writeFileSync(runs[i + 2], Buffer.from(out.data.buffer, out.data.byteOffset,
                                               out.data.byteLength));
    console.log(`${runs[i]}: output ${out.dims.join('x')}`);
  }
  console.log(`onnxruntime ${ort.env.versions.common}`);
}
main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
