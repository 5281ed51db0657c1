// The API reference's stylesheet and its one small script (a filter box), served by the control
// plane itself: the page works with no network but the control plane's.

export const STYLESHEET = `:root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6478;--bg:#fff;--panel:#f5f7fa;--line:#dde2ea;
--accent:#2557c7;--get:#1f7a45;--post:#2557c7;--put:#8a5a00;--patch:#7a3fb0;--delete:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#9aa3b5;--bg:#14171d;--panel:#1c2029;--line:#2c3240;
--accent:#7ea6ff;--get:#5fcf8c;--post:#7ea6ff;--put:#e6b450;--patch:#c79bf2;--delete:#ff8a80}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code{font:13px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;overflow-wrap:anywhere}
header{padding:16px 24px;border-bottom:1px solid var(--line)}header h1{margin:0 0 4px;font-size:22px}
.version{font-size:13px;color:var(--muted);font-weight:normal}
#filter{width:100%;max-width:480px;padding:6px 10px;font:inherit;border:1px solid var(--line);border-radius:6px;
background:var(--panel);color:inherit}
.layout{display:flex;align-items:flex-start}
nav{position:sticky;top:0;width:300px;flex:none;max-height:100vh;overflow:auto;padding:12px 16px;
border-right:1px solid var(--line);font-size:13px}
nav ul{list-style:none;margin:0;padding:0}nav>ul>li{margin-bottom:10px}nav>ul>li>a{font-weight:600}
nav li li a{display:flex;gap:6px;align-items:flex-start;color:var(--fg);padding:1px 0;overflow-wrap:anywhere}
nav li li span:last-child{min-width:0}
main{flex:1;min-width:0;padding:0 24px 48px}
h2{margin:28px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
article{margin:16px 0;padding:12px 16px;border:1px solid var(--line);border-radius:8px;background:var(--panel)}
article h3{margin:0 0 4px;font-size:16px}h4{margin:14px 0 4px;font-size:14px}
.summary{margin:4px 0;font-weight:600}.desc,.media,.bases{margin:4px 0}
.opid,.security,.meta,.bases{color:var(--muted);font-size:13px}.opid,.security{margin:2px 0}
.method{display:inline-block;min-width:58px;padding:1px 6px;border-radius:4px;color:#fff;font:600 12px/1.5 ui-monospace,monospace;
text-align:center}nav .method{min-width:50px;flex:none;font-size:11px}
.get{background:var(--get)}.post{background:var(--post)}.put{background:var(--put)}.patch{background:var(--patch)}
.delete{background:var(--delete)}.head,.options,.trace{background:var(--muted)}
@media (prefers-color-scheme:dark){.method{color:#111}}
.path{font-size:15px}.type{color:var(--muted)}.type a{font-weight:600}
.req{color:var(--delete);font-size:12px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-top:1px solid var(--line)}th{font-size:13px;color:var(--muted)}
td p{margin:0 0 2px}
.status{font:600 13px ui-monospace,monospace}.s2xx{color:var(--get)}.s3xx{color:var(--put)}.s4xx,.s5xx{color:var(--delete)}
.fields{margin:4px 0;padding-left:18px}.fields li{margin:4px 0}.fields .fields{border-left:2px solid var(--line);padding-left:14px}
.fields .desc,.fields .meta{margin:0}
@media (max-width:800px){.layout{display:block}nav{position:static;width:auto;max-height:none;border-right:0}}
`;

/** Shows the filter box and hides the operations (and their tags) that miss any typed word. */
export const SCRIPT = `"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("filter");
  if (!input) return;
  input.hidden = false;
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    for (const item of document.querySelectorAll("[data-search]"))
      item.hidden = !words.every((word) => item.dataset.search.includes(word));
    for (const group of document.querySelectorAll(".group:has([data-search])"))
      group.hidden = !group.querySelector("[data-search]:not([hidden])");
  });
});
`;
