// The console's page (a shell the script fills) and its stylesheet. The page holds no data and
// no inline script: everything it shows comes from the public API, read by console.js.

export const CONSOLE_STYLESHEET = `:root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6478;--bg:#fff;--panel:#f5f7fa;--line:#dde2ea;
--accent:#2557c7;--ok:#1f7a45;--warn:#8a5a00;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#9aa3b5;--bg:#14171d;--panel:#1c2029;--line:#2c3240;
--accent:#7ea6ff;--ok:#5fcf8c;--warn:#e6b450;--bad:#ff8a80}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:12px 24px;border-bottom:1px solid var(--line);display:flex;gap:16px;align-items:baseline}
header h1{margin:0;font-size:20px}header a{color:var(--muted);font-size:13px}
main{padding:0 24px 48px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code{font:12px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;overflow-wrap:anywhere}
.bar{display:flex;align-items:center;gap:12px;border-bottom:1px solid var(--line);margin-bottom:8px}
nav{display:flex;gap:4px;flex:1;flex-wrap:wrap}
nav a{padding:10px 12px;color:var(--fg);border-bottom:2px solid transparent}
nav a[aria-current=page]{border-bottom-color:var(--accent);font-weight:600}
button{font:inherit;padding:5px 12px;border:1px solid var(--line);border-radius:6px;background:var(--panel);color:inherit;cursor:pointer}
input,select{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;background:var(--panel);color:inherit}
label{display:flex;gap:8px;align-items:center;margin:6px 0}label>span{min-width:150px;color:var(--muted)}
fieldset{border:1px solid var(--line);border-radius:6px;margin:6px 0}
.sign-in{max-width:560px;margin:32px 0}.sign-in input{flex:1}
.muted{color:var(--muted)}.error{color:var(--bad);font-weight:600}
table{border-collapse:collapse;margin:6px 0}
th,td{text-align:left;vertical-align:top;padding:5px 10px;border-top:1px solid var(--line)}th{font-size:12px;color:var(--muted)}
.matrix th[scope=row]{color:var(--fg);font-size:14px}.matrix td{min-width:190px;border-left:1px solid var(--line)}
.matrix td[data-state=missing]{background:var(--panel)}.matrix .other{margin-top:4px;font-size:12px}
article{margin:12px 0;padding:10px 14px;border:1px solid var(--line);border-radius:8px;background:var(--panel)}
article h3,article h4{margin:0 0 4px}h4{margin:10px 0 2px}
.badge{display:inline-block;padding:0 7px;border-radius:10px;font-size:12px;font-weight:600;border:1px solid currentColor}
.badge[data-state=available],.badge[data-state=ready],.badge[data-state=up],.badge[data-state=succeeded],
.badge[data-state=running],.badge[data-state=chosen]{color:var(--ok)}
.badge[data-state=transferring],.badge[data-state=pending],.badge[data-state=provisioning],.badge[data-state=starting],
.badge[data-state=transferring-image],.badge[data-state=degraded],.badge[data-state=updating],.badge[data-state=eligible]{color:var(--warn)}
.badge[data-state=failed],.badge[data-state=down],.badge[data-state=stale],.badge[data-state=refused],
.badge[data-state=cancelled],.badge[data-state=unknown]{color:var(--bad)}
progress{width:140px;vertical-align:middle}
pre{margin:4px 0;padding:6px;background:var(--bg);border-radius:4px;font-size:12px;overflow:auto}
.explain{max-width:640px}.candidates ul{margin:0;padding-left:16px}
`;

export function renderConsolePage(assets: { stylesheet: string; script: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>globalvm console</title>
<link rel="stylesheet" href="${assets.stylesheet}">
<script src="${assets.script}" defer></script>
</head>
<body>
<header><h1>globalvm console</h1><a href="/docs">API reference</a></header>
<main id="app"><noscript>The console needs JavaScript; the API itself is at <a href="/docs">/docs</a>.</noscript></main>
</body>
</html>
`;
}
