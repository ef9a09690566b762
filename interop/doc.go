// Package interop holds callstate's interoperability test with LiveKit's
// browser SDK (livekit-client) in headless Chromium: a Go participant and a
// browser app in the same room see and send the same user data, session
// data, app messages and data packets.
//
// The test needs Chromium, Node.js and the web app's npm packages, so it is
// skipped unless CALLSTATE_BROWSER_TESTS=1. From the module's root:
//
//	bash interop/setup.sh && CALLSTATE_BROWSER_TESTS=1 go test ./interop
//
// setup.sh installs Debian's chromium when /usr/bin/chromium is missing,
// the packages pinned in web/package-lock.json, and bundles web/app.js into
// web/dist/app.js. driver.mjs opens the app's page in Chromium with
// playwright-core and prints what the app observed as JSON.
package interop
