import { loadModule, parseSync } from 'libpg-query';
await loadModule();
const n = Number(process.argv[2]);
const q = `select ${Array.from({ length: n }, (_, i) => `f${i % 3}(1)`).join(' + ')} from t`;
for (let i = 0; i < 40; i++) { const t = Date.now(); let r='ok'; try { parseSync(q); } catch (e) { r = e.message.slice(0,40); }
 const t2 = Date.now(); let ok = 'ok'; try { parseSync('select 1 from t'); } catch (e) { ok = e.message.slice(0,40); } console.log(i, r, Date.now() - t, ok, Date.now() - t2, (process.memoryUsage().arrayBuffers/1e6)|0, (process.memoryUsage().rss/1e6)|0); }
