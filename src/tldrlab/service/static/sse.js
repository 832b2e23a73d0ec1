// Shared by the digest and runs pages (EventSource cannot POST or send headers).
// Server-Sent Events over fetch: blocks separated by a blank line, `event:`, `data:` and `id:` fields.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      // The server died or the network went mid-stream: the browser says only "network error".
      if (err.name === "AbortError") throw err;
      throw new Error(`the connection to the server was lost mid-stream (${err.message}): is it still running?`);
    }
    const { value, done } = chunk;
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      yield { event, data: data.join("\n"), id };
    }
  }
}

// fetch() with its failure to get any answer (the server down or restarting, the network gone) said as such:
// the browser's own words ("Failed to fetch") name neither what failed nor what to check.
async function fetchFromServer(path, options) {
  try {
    return await fetch(path, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(`could not reach the server (${err.message}): is it running?`);
  }
}
