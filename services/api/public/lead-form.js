// The lead-capture form: validates each field against the API's own JSON schema (built into lead-schema.json from
// services/domain/lead-schemas.ts), posts the lead as JSON, and shows the API's answer next to the field it names.
// No framework: a few dozen lines of DOM code cost less to serve and audit than one.

const form = document.getElementById('lead-form')
const status = document.getElementById('status')
const confirmation = document.getElementById('confirmation')
const FIELDS = ['firstName', 'lastName', 'email', 'phone', 'product', 'state']

const MESSAGES = {
  firstName: 'Enter your first name (up to 100 characters).',
  lastName: 'Enter your last name (up to 100 characters).',
  email: 'Enter an email address like name@example.com.',
  phone: 'Enter a phone number: at least 7 digits; spaces and + ( ) . - are allowed, 7 to 20 characters in all.',
  product: 'Choose the insurance you need.',
  state: 'Choose your state.'
}

let rules

/** The subset of JSON Schema the lead schema uses; build-static refuses a schema with any other keyword. */
function check (rule, value) {
  if (value === null) return Array.isArray(rule.type) && rule.type.includes('null')
  if (typeof value !== 'string') return false
  // The chassis's keyword: no unpaired UTF-16 surrogate.
  if (rule.wellFormed === true && /\p{Cs}/u.test(value)) return false
  if (rule.minLength !== undefined && [...value].length < rule.minLength) return false
  if (rule.maxLength !== undefined && [...value].length > rule.maxLength) return false
  if (rule.pattern !== undefined && !new RegExp(rule.pattern, 'u').test(value)) return false
  if (rule.enum !== undefined && !rule.enum.includes(value)) return false
  if (rule.format !== undefined) {
    const format = rules.formats[rule.format]
    if (!new RegExp(format.source, format.flags).test(value)) return false
  }
  return true
}

function valueOf (name) {
  const raw = form.elements[name].value.trim()
  return raw === '' && !rules.schema.required.includes(name) ? null : raw
}

function show (name, message) {
  const input = form.elements[name]
  const error = document.getElementById(`${name}-error`)
  input.setAttribute('aria-invalid', message ? 'true' : 'false')
  error.textContent = message ?? ''
  error.hidden = !message
}

function validate (name) {
  const value = valueOf(name)
  const required = rules.schema.required.includes(name)
  const ok = value === null ? !required : check(rules.schema.properties[name], value)
  show(name, ok ? undefined : MESSAGES[name])
  return ok
}

function setStatus (text, isError) {
  status.textContent = text
  status.classList.toggle('error', isError)
}

/** The API's 400 names the field as body/<field>; each goes next to its input. */
function showApiErrors (message) {
  let shown = false
  for (const part of message.split('; ')) {
    const match = /^body\/([A-Za-z]+) (.*)$/.exec(part)
    if (match && FIELDS.includes(match[1])) {
      show(match[1], `${MESSAGES[match[1]]} (${match[2]})`)
      shown = true
    }
  }
  return shown
}

async function submit (event) {
  event.preventDefault()
  setStatus('', false)
  const valid = FIELDS.map(validate).every(Boolean)
  if (!valid) {
    setStatus('Please correct the fields marked above.', true)
    form.querySelector('[aria-invalid="true"]')?.focus()
    return
  }
  const lead = { source: 'web' }
  for (const name of FIELDS) {
    const value = valueOf(name)
    if (value !== null) lead[name] = value
  }
  const button = form.querySelector('button')
  button.disabled = true
  setStatus('Sending…', false)
  try {
    const res = await fetch(form.dataset.endpoint, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(lead) })
    const body = await res.json().catch(() => ({}))
    if (res.status === 201) {
      form.hidden = true
      confirmation.hidden = false
      confirmation.focus()
    } else if (res.status === 409 && body.code === 'LEAD_DUPLICATE') {
      show('email', 'We already have a request from this email for this insurance; an agent will be in touch.')
      setStatus('This request was already received.', true)
    } else if (res.status === 429) {
      const seconds = Number(res.headers.get('retry-after'))
      setStatus(`Too many requests from your connection. Please try again ${seconds > 0 ? `in ${seconds} seconds` : 'in a minute'}.`, true)
    } else if (res.status === 400 && showApiErrors(String(body.message ?? ''))) {
      setStatus('Please correct the fields marked above.', true)
    } else {
      setStatus('Something went wrong on our side. Please try again in a moment.', true)
    }
  } catch {
    setStatus('We could not reach the server. Check your connection and try again.', true)
  } finally {
    button.disabled = false
  }
}

rules = await (await fetch(form.dataset.schema)).json()
// A field at fault is checked again as it changes, so its error goes as soon as it is fixed; new errors appear only
// on submit, so the form never moves under the pointer on its way to the button.
for (const name of FIELDS) {
  for (const type of ['input', 'change']) {
    form.elements[name].addEventListener(type, () => { if (form.elements[name].getAttribute('aria-invalid') === 'true') validate(name) })
  }
}
form.addEventListener('submit', submit)
form.dataset.ready = 'true'
